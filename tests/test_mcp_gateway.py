"""`/mcp` through a real gateway on loopback (issue 20): the official Python and
TypeScript MCP clients in front of a FastMCP server the gateway supervises over
stdio, behind the isolation suite's tenants (tests/isolation.py).

`blue` (the victim) may use `calc__add`, `calc__echo` and `calc__slow`; `red` (the
attacker, a sibling tenant) only `calc__echo` and `calc__pid`. Walls checked: the
attacker cannot list, call or chaos-target the victim's tools, nor use its session
id; a result altered between `/mcp` and `/v1/chat/completions` is caught; CEL
policies and tool-call limits see MCP calls.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cli import main as seawall
from tests.isolation import ALL_ROLES, chat, keys, two_tenants
from tests.support import RECEIPT_SECRET, ServerThread, running_gateway
from tests.toolservers_support import EVERYTHING, NODE_DIR, ROOT, everything_http, stdio_argv

ACCEPT = "application/json, text/event-stream"
VERSION = "2025-11-25"
BLUE, RED = "blue-all", "red-all"
BLUE_TOOLS = ["calc__add", "calc__echo", "calc__slow"]


def config() -> dict[str, Any]:
    argv = stdio_argv()
    allow = {
        "blue": {
            "models": ["chat", "blue-chat"],
            "tools": BLUE_TOOLS,
            "chaos_targets": ["blue-own", "group:blue-chat", "tool:calc__add"],
        },
        "red": {
            "models": ["chat", "red-chat"],
            "tools": ["calc__echo", "calc__pid"],
            "chaos_targets": ["red-own", "group:red-chat"],
        },
    }
    built = two_tenants(
        tenant_extra={t: {"allow": a} for t, a in allow.items()},
        receipts={"keys": [{"id": "k1", "secret": RECEIPT_SECRET}]},
        mcp={
            "servers": [
                {
                    "name": "calc",
                    "transport": "stdio",
                    "command": argv[0],
                    "args": argv[1:],
                    "cwd": str(ROOT),
                }
            ]
        },
        policies={
            "rules": [
                {
                    "id": "no-destructive-tools",
                    "tenant": "blue",
                    "when": '"hint:destructiveHint" in tools',
                    "effect": "deny",
                    "message": "destructive MCP tools are off",
                },
                {
                    "id": "pid-is-scarce",
                    "tenant": "red",
                    "when": 'endpoint == "mcp" && model == "calc" && "calc__pid" in tools',
                    "effect": "limit_class",
                    "limit_class": "scarce",
                },
            ]
        },
        limits={"classes": {"scarce": {"requests_per_minute": 2}}},
    )
    # `green` may use no MCP tool: it sees no server at all, resources and prompts included.
    built["tenants"].append({"id": "green", "parent": "org", "allow": {"tools": []}})
    built["keys"] += keys({"green-all": ("green", ALL_ROLES)})
    return built


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway(config()) as server:
        yield server


def headers(key: str, session: str | None = None, **extra: str) -> dict[str, str]:
    out = {"authorization": f"Bearer {key}", "accept": ACCEPT, "content-type": "application/json"}
    if session is not None:
        out["mcp-session-id"] = session
        out["mcp-protocol-version"] = VERSION
    return {**out, **extra}


def initialize(client: httpx.Client, key: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t"}},
    }
    answer = client.post("/mcp", json=body, headers=headers(key))
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert client.post("/mcp", json=note, headers=headers(key, session)).status_code == 202
    return session


def rpc(
    client: httpx.Client, key: str, session: str, method: str, params: Any, **extra: str
) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}
    return client.post("/mcp", json=body, headers=headers(key, session, **extra))


def call_tool(
    client: httpx.Client, key: str, session: str, name: str, arguments: Any, **extra: str
) -> dict[str, Any]:
    answer = rpc(
        client, key, session, "tools/call", {"name": name, "arguments": arguments}, **extra
    )
    assert answer.status_code == 200, answer.text
    reply: dict[str, Any] = answer.json()
    return reply


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        yield http


async def test_python_client_lists_and_calls_namespaced_tools(gateway: ServerThread) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {BLUE}"})
    async with Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as mcp:
        assert mcp.protocol_version == VERSION
        names = sorted(tool.name for tool in (await mcp.list_tools()).tools)
        assert names == BLUE_TOOLS
        result = await mcp.call_tool("calc__add", {"a": 2, "b": 3})
        assert result.structured_content == {"total": 5}
        assert result.meta is not None and result.meta["seawall_receipt"].startswith("v1.k1.")
        echoed = await mcp.call_tool("calc__echo", {"text": "hi"})
        assert echoed.content[0].text == "echo: hi"


async def test_the_reference_server_through_the_gateway() -> None:
    """`@modelcontextprotocol/server-everything` (npm) as an upstream over Streamable
    HTTP, driven by the official Python client through `/mcp`: its tools listed under
    the `every__` namespace, called, their structured results and receipts intact."""
    if not EVERYTHING.is_file():
        pytest.fail("tests/node is not installed: run `make deps`")
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    with everything_http() as url:
        cfg = config()
        cfg["mcp"]["servers"].append({"name": "every", "transport": "http", "url": url})
        for tenant in cfg["tenants"]:
            if tenant["id"] == "blue":
                tenant["allow"]["tools"] = [*BLUE_TOOLS, "every__get-sum", "every__echo"]
                tenant["allow"]["tools"].append("every__get-structured-content")
        with running_gateway(cfg) as server:
            http = httpx2.AsyncClient(headers={"authorization": f"Bearer {BLUE}"})
            async with Client(streamable_http_client(server.url + "/mcp", http_client=http)) as mcp:
                names = {tool.name for tool in (await mcp.list_tools()).tools}
                assert {"every__get-sum", "every__echo"} <= names
                assert not {n for n in names if n.startswith("every__")} - {
                    "every__get-sum",
                    "every__echo",
                    "every__get-structured-content",
                }  # only what blue is allowed
                summed = await mcp.call_tool("every__get-sum", {"a": 1, "b": 2})
                assert "3" in summed.content[0].text
                assert summed.meta is not None and "seawall_receipt" in summed.meta
                weather = await mcp.call_tool(
                    "every__get-structured-content", {"location": "New York"}
                )
                assert weather.structured_content is not None
                assert "temperature" in weather.structured_content


def test_typescript_client(gateway: ServerThread) -> None:
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.fail("tests/node is not installed: run `make deps`")
    run = subprocess.run(
        ["node", "mcp_client.mjs", gateway.url + "/mcp", BLUE, "calc__add", '{"a": 40, "b": 2}'],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["version"] == VERSION
    assert sorted(out["tools"]) == BLUE_TOOLS
    assert out["result"]["structuredContent"] == {"total": 42}
    assert out["result"]["_meta"]["seawall_receipt"].startswith("v1.")


def test_keys_and_roles(client: httpx.Client) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    anonymous = client.post("/mcp", json=body, headers={"accept": ACCEPT})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    no_role = client.post("/mcp", json=body, headers=headers("blue-user"))
    assert no_role.status_code == 403
    assert "'tools' role" in no_role.json()["error"]["message"]


def test_a_sibling_tenant_cannot_reach_the_victims_tools(client: httpx.Client) -> None:
    """The attacker's strongest key: the victim's tools are absent (not `forbidden`),
    its session id is unknown, its tools are no chaos target for it."""
    victim = initialize(client, BLUE)
    attacker = initialize(client, RED)
    listed = rpc(client, RED, attacker, "tools/list", {}).json()["result"]["tools"]
    assert sorted(t["name"] for t in listed) == ["calc__echo", "calc__pid"]
    hidden = call_tool(client, RED, attacker, "calc__add", {"a": 1, "b": 1})
    absent = call_tool(client, RED, attacker, "calc__nothing", {})
    assert hidden["error"]["code"] == absent["error"]["code"] == -32602
    assert hidden["error"]["message"] == "Unknown tool: calc__add"
    # The victim's session, with the attacker's key: as if it never existed.
    stolen = rpc(client, RED, victim, "tools/list", {})
    assert stolen.status_code == 404
    assert client.delete("/mcp", headers=headers(RED, victim)).status_code == 404
    # Still the victim's.
    assert rpc(client, BLUE, victim, "tools/list", {}).status_code == 200
    aimed = rpc(
        client,
        RED,
        attacker,
        "tools/list",
        {},
        **{"x-seawall-chaos": "forge_tool;mode=wrong;target=tool:calc__add"},
    )
    assert aimed.status_code == 403
    assert aimed.json()["error"]["code"] == "chaos_target_not_allowed"


def test_a_tenant_opening_sessions_past_its_cap_evicts_only_its_own() -> None:
    """Red's keys (every role) open sessions without end; red holds at most its
    tenant's cap, each new one closing red's own oldest, and the gateway never fills:
    blue's session stays usable, and blue can still open one."""
    cfg = config()
    cfg["mcp"]["sessions"] = {"max_per_key": 2, "max_per_tenant": 3, "max_total": 5}
    cfg["keys"] += keys({"red-second": ("red", ALL_ROLES)})
    with (
        running_gateway(cfg) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        victim = initialize(client, BLUE)
        opened = [(key, initialize(client, key)) for _ in range(4) for key in (RED, "red-second")]
        alive = [s for key, s in opened if rpc(client, key, s, "ping", {}).status_code == 200]
        assert len(alive) == 3  # red's cap, met by closing red's own oldest
        assert opened[-1][1] in alive
        assert rpc(client, BLUE, victim, "tools/list", {}).status_code == 200
        second = initialize(client, BLUE)  # room left for blue
        assert rpc(client, BLUE, second, "tools/list", {}).status_code == 200
        assert rpc(client, BLUE, victim, "tools/list", {}).status_code == 200


def tool_turn(name: str, arguments: str, content: Any, receipt: str | None) -> dict[str, Any]:
    """A chat request whose last message is the result of the model's call of `name`."""
    message: dict[str, Any] = {"role": "tool", "tool_call_id": "call_1", "content": content}
    if receipt is not None:
        message["seawall_receipt"] = receipt
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        "messages": [
            {"role": "user", "content": "add 2 and 3"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            message,
        ]
    }


def test_results_are_verified_when_the_agent_shows_them_to_the_model(
    client: httpx.Client, gateway: ServerThread
) -> None:
    session = initialize(client, BLUE)
    result = call_tool(client, BLUE, session, "calc__add", {"a": 2, "b": 3})["result"]
    text, receipt = result["content"][0]["text"], result["_meta"]["seawall_receipt"]
    arguments = '{"b": 3, "a": 2}'  # the model's own spelling of the same arguments
    genuine = chat(gateway.url, BLUE, json=tool_turn("calc__add", arguments, text, receipt))
    assert genuine.status_code == 200, genuine.text
    # No receipt: the key's ledger recognises the result served through /mcp.
    recognised = chat(gateway.url, BLUE, json=tool_turn("calc__add", arguments, text, None))
    assert recognised.status_code == 200, recognised.text
    altered = text.replace("5", "6")
    for receipt_sent in (receipt, None):
        forged = chat(
            gateway.url, BLUE, json=tool_turn("calc__add", arguments, altered, receipt_sent)
        )
        assert forged.status_code == 400, forged.text
        assert forged.json()["error"]["code"] == "tool_result_forged"
    # The genuine text passed off as the answer to another call.
    other = chat(gateway.url, BLUE, json=tool_turn("calc__add", '{"a": 1, "b": 4}', text, None))
    assert other.json()["error"]["code"] == "tool_result_forged"


def responses_turn(
    url: str, name: str, arguments: str, output: str, ask: str = "go"
) -> httpx.Response:
    """A Responses API turn (blue's) whose input ends with the model's call of `name`
    and its result, `output`, as a `function_call_output`: no receipt can ride along."""
    items = [
        {"role": "user", "content": ask},
        {"type": "function_call", "call_id": "call_9", "name": name, "arguments": arguments},
        {"type": "function_call_output", "call_id": "call_9", "output": output},
    ]
    return httpx.post(
        f"{url}/v1/responses",
        json={"model": "chat", "input": items},
        headers={"authorization": f"Bearer {BLUE}"},
        timeout=30,
    )


def test_results_are_verified_through_the_responses_api(
    client: httpx.Client, gateway: ServerThread
) -> None:
    """An agent on the Responses API sends the MCP result as a `function_call_output`
    (no receipt: the Responses API has no field for it): the ledger vouches for it."""
    session = initialize(client, BLUE)
    result = call_tool(client, BLUE, session, "calc__add", {"a": 20, "b": 22})["result"]
    text = result["content"][0]["text"]

    def respond(output: str) -> httpx.Response:
        return responses_turn(
            gateway.url, "calc__add", '{"a": 20, "b": 22}', output, "add 20 and 22"
        )

    assert respond(text).status_code == 200, respond(text).text
    forged = respond(text.replace("42", "41"))
    assert forged.status_code == 400, forged.text
    assert forged.json()["error"]["code"] == "tool_result_forged"


def test_chaos_forgeries_are_caught_model_side(client: httpx.Client, gateway: ServerThread) -> None:
    session = initialize(client, BLUE)
    fault = {"x-seawall-chaos": "forge_tool;mode=wrong;target=tool:calc__add"}
    answer = rpc(
        client, BLUE, session, "tools/call", {"name": "calc__add", "arguments": {"a": 2, "b": 2}},
        **fault,
    )  # fmt: skip
    assert answer.headers["x-seawall-chaos-injected"] == "forge_tool@tool:calc__add"
    result = answer.json()["result"]
    assert result["structuredContent"] != {"total": 4}
    text, receipt = result["content"][0]["text"], result["_meta"]["seawall_receipt"]
    shown = chat(gateway.url, BLUE, json=tool_turn("calc__add", '{"a":2,"b":2}', text, receipt))
    assert shown.status_code == 400
    assert shown.json()["error"]["code"] == "tool_result_forged"
    # Another tool of the same request is not hit: the fault is aimed at calc__add.
    echoed = call_tool(client, BLUE, session, "calc__echo", {"text": "x"}, **fault)
    assert echoed["result"]["content"][0]["text"] == "echo: x"


def test_policies_and_limits_see_mcp_calls(client: httpx.Client) -> None:
    blue = initialize(client, BLUE)
    denied = call_tool(client, BLUE, blue, "calc__slow", {"ms": 1})
    assert denied["error"]["code"] == -32010
    assert "no-destructive-tools" in denied["error"]["message"]
    red = initialize(client, RED)
    for _ in range(2):
        assert "result" in call_tool(client, RED, red, "calc__pid", {})
    limited = call_tool(client, RED, red, "calc__pid", {})
    assert limited["error"]["code"] == -32011
    assert "requests_per_minute" in limited["error"]["message"]
    # Only the selected tool is limited.
    assert "result" in call_tool(client, RED, red, "calc__echo", {"text": "still"})


def test_errors_name_no_internals(client: httpx.Client) -> None:
    session = initialize(client, BLUE)
    broken = client.post(
        "/mcp", content=b"{not json", headers=headers(BLUE, session)
    )  # a parse error, answered as JSON-RPC
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == -32700
    assert "Traceback" not in broken.text
    big = client.post("/mcp", content=b"x" * (5 * 1024 * 1024), headers=headers(BLUE, session))
    assert big.status_code == 413


def test_a_tenant_without_tools_sees_no_server(client: httpx.Client) -> None:
    blue = initialize(client, BLUE)
    resources = rpc(client, BLUE, blue, "resources/list", {}).json()["result"]["resources"]
    assert [r["uri"] for r in resources] == ["memo://greeting"]
    green = initialize(client, "green-all")
    for method, key in (("tools/list", "tools"), ("resources/list", "resources"),
                        ("prompts/list", "prompts")):  # fmt: skip
        assert rpc(client, "green-all", green, method, {}).json()["result"][key] == []
    read = rpc(client, "green-all", green, "resources/read", {"uri": "memo://greeting"})
    assert read.json()["error"]["message"] == "Resource not found"


def test_mcp_list_prints_what_each_tenant_sees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text(yaml.safe_dump(config()))
    assert seawall(["mcp", "list", "--config", str(path), "--json"]) == 0
    views = json.loads(capsys.readouterr().out)
    assert views["servers"][0]["name"] == "calc" and views["servers"][0]["reachable"]
    seen = {t["tenant"]: t["tools"] for t in views["tenants"]}
    assert seen["blue"] == BLUE_TOOLS
    assert seen["red"] == ["calc__echo", "calc__pid"]
    assert seen["green"] == []
    assert "calc__liar" in seen["root"] and "calc__liar" in seen["org"]


def test_servers_are_reloaded_with_the_config() -> None:
    """A server added by a config reload is served at once; removed, it is gone;
    a session outlives both reloads (sessions live in the gateway's State)."""
    with_server = config()
    # Without the server, its tools are no names an allow-list may use: none is listed.
    tenants = [
        {**t, "allow": {"models": t["allow"]["models"]}} if "models" in t.get("allow", {}) else t
        for t in with_server["tenants"]
    ]
    without = {**with_server, "mcp": {"servers": []}, "tenants": tenants}
    with running_gateway(without) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        session = initialize(http, BLUE)
        assert rpc(http, BLUE, session, "tools/list", {}).json()["result"]["tools"] == []

        def apply(document: dict[str, Any]) -> None:
            reply = http.put(
                "/admin/config",
                content=yaml.safe_dump(document),
                headers={"authorization": "Bearer root-admin"},
            )
            assert reply.status_code == 200, reply.text

        apply(with_server)
        reply = rpc(http, BLUE, session, "tools/list", {})
        assert "result" in reply.json(), reply.text
        listed = reply.json()["result"]["tools"]
        assert sorted(t["name"] for t in listed) == BLUE_TOOLS
        apply(without)
        assert rpc(http, BLUE, session, "tools/list", {}).json()["result"]["tools"] == []


def test_get_streams_end_when_the_gateway_drains() -> None:
    """The GET stream every SDK client keeps open ends once draining begins, so a
    shutdown does not wait out `server.shutdown_timeout_s` for it."""
    document = {**config(), "mcp": {}}
    for tenant in document["tenants"]:
        tenant.get("allow", {}).pop("tools", None)
        tenant.get("allow", {}).pop("chaos_targets", None)
    with running_gateway(document) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        session = initialize(http, BLUE)
        stream_headers = {**headers(BLUE, session), "accept": "text/event-stream"}
        with http.stream("GET", "/mcp", headers=stream_headers) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == ": stream open"
            server.app.state.gateway.drain.begin()
            assert list(lines) == [""]  # the event's blank line, then the end


async def agent_run(url: str, chaos: str | None = None, model_url: str | None = None) -> Any:
    """OpenAI's Agents SDK, its MCP tools from `/mcp` and its model (the embedded mock,
    which calls the first tool it is offered) through `/v1/responses` (of `model_url`,
    another replica, if given), one key."""
    import openai
    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
    from agents.mcp import MCPServerStreamableHttp

    set_tracing_disabled(True)
    extra = {"x-seawall-chaos": chaos} if chaos else {}
    server = MCPServerStreamableHttp(
        {"url": url + "/mcp", "headers": {"authorization": f"Bearer {BLUE}", **extra}},
        tool_filter={"allowed_tool_names": ["calc__add"]},
    )
    model_base = (model_url or url) + "/v1"
    model_client = openai.AsyncOpenAI(base_url=model_base, api_key=BLUE, max_retries=0)
    await server.connect()
    try:
        agent = Agent(
            name="adder",
            model=OpenAIResponsesModel("chat", model_client),
            mcp_servers=[server],
        )
        return await Runner.run(agent, "Add two numbers.", max_turns=3)
    finally:
        await server.cleanup()
        await model_client.close()


async def test_an_agent_framework_end_to_end(gateway: ServerThread) -> None:
    """The model's call goes through `/mcp`, its result back through `/v1/responses`,
    recognised as served (the SDK drops `_meta`: the ledger vouches). Forged on the
    way (chaos), the same result is refused before the model reads it."""
    import openai

    result = await agent_run(gateway.url)
    assert str(result.final_output).startswith("The tool returned: ")
    assert "total" in str(result.final_output)
    with pytest.raises(openai.BadRequestError) as refused:
        await agent_run(gateway.url, "forge_tool;mode=wrong;target=tool:calc__add")
    assert refused.value.code == "tool_result_forged"


def test_every_mcp_request_is_an_audit_record(tmp_path: Path) -> None:
    """With the audit log on, each /mcp request is a record: the messages handled
    (method, server, tool, the JSON-RPC error a refusal got) and the chaos injected."""
    from audit.keys import generate_keypair

    generate_keypair(tmp_path / "audit.key", tmp_path / "audit.pub")
    document = config()
    document["audit"] = {
        "enabled": True,
        "directory": str(tmp_path / "log"),
        "stream": "mcp",
        "signing_key_file": str(tmp_path / "audit.key"),
        "batch_window_ms": 5,
    }
    with running_gateway(document) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        session = initialize(http, BLUE)
        assert "result" in call_tool(http, BLUE, session, "calc__add", {"a": 1, "b": 2})
        denied = call_tool(http, BLUE, session, "calc__slow", {"ms": 1})
        assert denied["error"]["code"] == -32010
        answer = http.get(
            "/admin/audit",
            params={"endpoint": "mcp", "tenant": "blue"},
            headers={"authorization": "Bearer blue-all"},
        )
    assert answer.status_code == 200, answer.text
    messages = [m for r in answer.json()["data"] for m in r["mcp"]]
    assert {
        "method": "tools/call",
        "server": "calc",
        "tool": "calc__add",
        "error": None,
    } in messages
    assert {
        "method": "tools/call",
        "server": "calc",
        "tool": "calc__slow",
        "error": -32010,
    } in messages
    assert "notifications/initialized" in {m["method"] for m in messages}
    assert len(answer.json()["data"]) == 4  # initialize (a session's start) included
    from audit.record import RequestRecord

    for record in answer.json()["data"]:  # every field of the schema, as any request's
        assert set(RequestRecord.__annotations__) <= set(record), record
