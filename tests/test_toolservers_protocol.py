"""`/mcp` end to end: the official Python and TypeScript clients and the OpenAI Agents
SDK against toolservers' Streamable HTTP layer (served by uvicorn through the small
route tests/toolservers_support.py gives it, as the gateway's will), in front of
two real upstream servers over stdio: a FastMCP server and the npm reference server."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.toolservers_support import EVERYTHING, NODE_DIR, ROOT, ThreadedGateway, stdio_argv
from toolservers.caller import Caller
from toolservers.config import McpConfig
from toolservers.jsonrpc import Notification
from toolservers.verify import Verdict

TOKENS = {
    "tok-a": Caller("a"),
    "tok-b": Caller("b", tools=frozenset({"calc__add", "calc__echo"})),
    "tok-c": Caller("c", servers=frozenset({"every"})),
}
ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def gateway() -> Iterator[ThreadedGateway]:
    argv = stdio_argv()
    config = McpConfig.model_validate(
        {
            "servers": [
                {
                    "name": "calc",
                    "transport": "stdio",
                    "command": argv[0],
                    "args": argv[1:],
                    "cwd": str(ROOT),
                },
                {
                    "name": "every",
                    "transport": "stdio",
                    "command": "node",
                    "args": [str(EVERYTHING), "stdio"],
                },
            ],
            "sessions": {"max_per_key": 3},
        }
    )
    running = ThreadedGateway(config, TOKENS).start()
    yield running
    running.stop()


def headers(token: str, session: str | None = None, version: str | None = None) -> dict[str, str]:
    out = {"authorization": f"Bearer {token}", "accept": ACCEPT, "content-type": "application/json"}
    if session:
        out["mcp-session-id"] = session
    if version:
        out["mcp-protocol-version"] = version
    return out


def initialize(client: httpx.Client, url: str, token: str, version: str = "2025-11-25") -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    answer = client.post(url, json=body, headers=headers(token))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["protocolVersion"] == version
    session = answer.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert client.post(url, json=note, headers=headers(token, session, version)).status_code == 202
    return session


def call(
    client: httpx.Client, url: str, token: str, session: str, method: str, params: Any = None
) -> Any:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    return client.post(url, json=body, headers=headers(token, session, "2025-11-25"))


async def test_python_client_negotiates_lists_and_calls(gateway: ThreadedGateway) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"authorization": "Bearer tok-a"})
    # mode="auto" (the default) probes server/discover (2026-07-28) first and falls back.
    async with Client(streamable_http_client(gateway.url, http_client=http)) as client:
        assert client.protocol_version == "2025-11-25"
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert "calc__add" in names and "every__echo" in names and "every__get-sum" in names
        assert not any("dotted" in name for name in names)  # not a valid function name
        result = await client.call_tool("calc__add", {"a": 2, "b": 3})
        assert result.structured_content == {"total": 5}
        assert result.meta is not None and result.meta["seawall_receipt"].startswith("v1.k1.")
        echoed = await client.call_tool("every__echo", {"message": "hi"})
        assert echoed.content[0].text == "Echo: hi"


def test_typescript_client(gateway: ThreadedGateway) -> None:
    run = subprocess.run(
        ["node", "mcp_client.mjs", gateway.url, "tok-b", "calc__add", '{"a": 40, "b": 2}'],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["version"] == "2025-11-25"
    assert sorted(out["tools"]) == ["calc__add", "calc__echo"]
    assert out["result"]["structuredContent"] == {"total": 42}
    assert out["result"]["_meta"]["seawall_receipt"].startswith("v1.")
    assert out["error"] is None


def test_hidden_tool_is_indistinguishable_from_absent(gateway: ThreadedGateway) -> None:
    with httpx.Client(timeout=30) as client:
        session = initialize(client, gateway.url, "tok-b")
        listed = call(client, gateway.url, "tok-b", session, "tools/list").json()["result"]["tools"]
        assert [t["name"] for t in listed] == ["calc__add", "calc__echo"]
        hidden = call(
            client,
            gateway.url,
            "tok-b",
            session,
            "tools/call",
            {"name": "calc__liar", "arguments": {}},
        )
        absent = call(
            client,
            gateway.url,
            "tok-b",
            session,
            "tools/call",
            {"name": "calc__nope", "arguments": {}},
        )
        other = call(
            client,
            gateway.url,
            "tok-b",
            session,
            "tools/call",
            {"name": "every__echo", "arguments": {}},
        )
        errors = [r.json()["error"] for r in (hidden, absent, other)]
        assert {e["code"] for e in errors} == {-32602}
        assert [e["message"] for e in errors] == [
            "Unknown tool: calc__liar",
            "Unknown tool: calc__nope",
            "Unknown tool: every__echo",
        ]
        # A server outside the caller's servers: none of its resources or prompts either.
        session_c = initialize(client, gateway.url, "tok-c")
        tools = call(client, gateway.url, "tok-c", session_c, "tools/list").json()["result"][
            "tools"
        ]
        assert tools and all(t["name"].startswith("every__") for t in tools)


def test_sessions_belong_to_their_key_and_are_bounded(gateway: ThreadedGateway) -> None:
    with httpx.Client(timeout=30) as client:
        mine = initialize(client, gateway.url, "tok-a")
        assert call(client, gateway.url, "tok-a", mine, "ping").json()["result"] == {}
        stolen = call(client, gateway.url, "tok-b", mine, "ping")
        assert stolen.status_code == 404  # another key's session is an unknown one
        assert stolen.json() == call(client, gateway.url, "tok-b", "no-such-id", "ping").json()
        # max_per_key is 3: a fourth session closes the key's least recently used one.
        later = [initialize(client, gateway.url, "tok-a") for _ in range(3)]
        assert call(client, gateway.url, "tok-a", mine, "ping").status_code == 404
        assert all(call(client, gateway.url, "tok-a", s, "ping").status_code == 200 for s in later)
        deleted = client.delete(gateway.url, headers=headers("tok-a", later[0]))
        assert deleted.status_code == 200
        assert call(client, gateway.url, "tok-a", later[0], "ping").status_code == 404
        assert client.delete(gateway.url, headers=headers("tok-a", later[0])).status_code == 404


def test_transport_rules(gateway: ThreadedGateway) -> None:
    url = gateway.url
    with httpx.Client(timeout=30) as client:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        no_session = client.post(url, json=ping, headers=headers("tok-a"))
        assert no_session.status_code == 400 and no_session.json()["error"]["code"] == -32600
        # 2026-07-28's probe gets a non-modern error: clients fall back to initialize.
        probe = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
        assert client.post(url, json=probe, headers=headers("tok-a")).status_code == 400
        evil = {**headers("tok-a"), "origin": "http://evil.example"}
        assert client.post(url, json=ping, headers=evil).status_code == 403
        session = initialize(client, url, "tok-a")
        wrong_version = client.post(url, json=ping, headers=headers("tok-a", session, "2025-03-26"))
        assert wrong_version.status_code == 400
        assert (
            client.post(url, content=b"{", headers=headers("tok-a", session)).json()["error"][
                "code"
            ]
            == -32700
        )
        deep = b"[" * 100 + b"]" * 100
        assert (
            client.post(url, content=deep, headers=headers("tok-a", session)).json()["error"][
                "code"
            ]
            == -32600
        )
        batch = [ping, {**ping, "id": 2}]
        refused = client.post(url, json=batch, headers=headers("tok-a", session))
        assert refused.status_code == 400 and "batch" in refused.json()["error"]["message"]
        old = initialize(client, url, "tok-a", "2025-03-26")
        answered = client.post(url, json=batch, headers=headers("tok-a", old, "2025-03-26"))
        assert [m["id"] for m in answered.json()] == [1, 2]
        unknown = call(client, url, "tok-a", session, "sampling/createMessage", {})
        assert unknown.json()["error"]["code"] == -32601
        sse = client.post(
            url,
            json={**ping, "id": 9},
            headers={**headers("tok-a", session), "accept": "text/event-stream"},
        )
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert '"id":9' in sse.text


def test_arguments_and_results_are_verified(gateway: ThreadedGateway) -> None:
    with httpx.Client(timeout=30) as client:
        session = initialize(client, gateway.url, "tok-a")
        bad = call(
            client,
            gateway.url,
            "tok-a",
            session,
            "tools/call",
            {"name": "calc__add", "arguments": {"a": "x", "b": 1}},
        )
        result = bad.json()["result"]
        assert result["isError"] is True
        assert "did not call tool 'calc__add'" in result["content"][0]["text"]
        assert "$.a" in result["content"][0]["text"]
        liar = call(
            client,
            gateway.url,
            "tok-a",
            session,
            "tools/call",
            {"name": "calc__liar", "arguments": {}},
        )
        text = liar.json()["result"]["content"][0]["text"]
        assert liar.json()["result"]["isError"] is True
        assert "withheld" in text and "'many' is not of type 'integer'" in text


def test_get_stream_carries_list_changed(gateway: ThreadedGateway) -> None:
    with httpx.Client(timeout=30) as client:
        session = initialize(client, gateway.url, "tok-a")
        stream_headers = {**headers("tok-a", session, "2025-11-25"), "accept": "text/event-stream"}
        with client.stream("GET", gateway.url, headers=stream_headers) as stream:
            assert stream.status_code == 200
            second = client.get(gateway.url, headers=stream_headers)
            assert second.status_code == 409  # one stream per session
            lines = stream.iter_lines()
            assert next(lines) == ": stream open"
            upstream = gateway.service.catalog.upstreams["every"]
            notification = Notification("notifications/tools/list_changed")
            gateway.loop.call_soon_threadsafe(upstream.connection.on_notification, notification)
            for line in lines:
                if line.startswith("data:"):
                    assert json.loads(line[5:])["method"] == "notifications/tools/list_changed"
                    break


async def test_agents_sdk_results_are_recognised_model_side(gateway: ThreadedGateway) -> None:
    """The OpenAI Agents SDK's own MCP path turns a CallToolResult into a tool output;
    the gateway's model-side check recognises it (ledger and receipt), and catches it
    altered, under another key, or for other arguments."""
    from agents import RunContextWrapper
    from agents.mcp import MCPServerStreamableHttp, MCPUtil

    server = MCPServerStreamableHttp(
        {"url": gateway.url, "headers": {"authorization": "Bearer tok-a"}},
        use_structured_content=False,
    )
    await server.connect()
    try:
        tools = {tool.name: tool for tool in await server.list_tools()}
        output = await MCPUtil.invoke_mcp_tool(
            server, tools["every__get-sum"], RunContextWrapper(None), '{"a": 2, "b": 5}'
        )
    finally:
        await server.cleanup()
    # What the Responses API input item becomes in the gateway: text parts.
    parts = output if isinstance(output, list) else [output]
    content = [{"type": "text", "text": part["text"]} for part in parts]
    service = gateway.service
    a, b = TOKENS["tok-a"], TOKENS["tok-b"]
    arguments = '{"b": 5, "a": 2}'  # the model's call: another key order, the same value
    assert (await service.check_tool_message(a, "every__get-sum", arguments, content)).genuine
    assert (
        await service.check_tool_message(a, "every__get-sum", arguments, content[0]["text"])
    ).genuine
    altered = [{"type": "text", "text": content[0]["text"].replace("7", "8")}]
    verdict = await service.check_tool_message(a, "every__get-sum", arguments, altered)
    assert not verdict.genuine and "no result with this content" in (verdict.reason or "")
    assert not (await service.check_tool_message(b, "every__get-sum", arguments, content)).genuine
    assert not (
        await service.check_tool_message(a, "every__get-sum", '{"a": 3, "b": 4}', content)
    ).genuine
    assert service.mcp_tool(a, "every__get-sum") == "every"
    assert service.mcp_tool(b, "every__get-sum") is None


def test_receipts_forwarded_by_the_agent_are_verified(gateway: ThreadedGateway) -> None:
    with httpx.Client(timeout=30) as client:
        session = initialize(client, gateway.url, "tok-a")
        answer = call(
            client,
            gateway.url,
            "tok-a",
            session,
            "tools/call",
            {"name": "calc__add", "arguments": {"a": 1, "b": 1}},
        )
    result = answer.json()["result"]
    service, a, b = gateway.service, TOKENS["tok-a"], TOKENS["tok-b"]

    def check(*args: Any) -> Verdict:
        # The memory ledger holds no I/O: its check runs on this thread's own loop.
        return asyncio.run(service.check_tool_message(*args))

    text = result["content"][0]["text"]
    receipt = result["_meta"]["seawall_receipt"]
    structured = result["_meta"]["seawall_receipt_structured"]
    assert check(a, "calc__add", '{"a":1,"b":1}', text, receipt).how == "receipt"
    assert check(a, "calc__add", '{"a":1,"b":1}', text, receipt).genuine
    # The Agents SDK's use_structured_content form: json.dumps of structuredContent.
    dumped = json.dumps(result["structuredContent"])
    assert check(a, "calc__add", {"a": 1, "b": 1}, dumped, structured).genuine
    assert not check(a, "calc__add", {"a": 1, "b": 1}, '{"total": 3}', receipt).genuine
    assert not check(b, "calc__add", {"a": 1, "b": 1}, text, receipt).genuine
    assert not check(a, "calc__echo", {"a": 1, "b": 1}, text, receipt).genuine


async def restarted(connection: Any, starts: int) -> None:
    """Until the supervisor has started the child `starts` times and it is ready."""
    async with asyncio.timeout(30):
        while not (connection.starts >= starts and connection.state == "ready"):  # noqa: ASYNC110 (polling the supervisor)
            await asyncio.sleep(0.01)


def test_server_down_is_a_clear_error(gateway: ThreadedGateway) -> None:
    """A stdio server that crashes mid-call: the call gets a clear error at once (no
    hang), the child is restarted, and the next call works."""
    with httpx.Client(timeout=30) as client:
        session = initialize(client, gateway.url, "tok-a")
        crashed = call(
            client,
            gateway.url,
            "tok-a",
            session,
            "tools/call",
            {"name": "calc__crash", "arguments": {}},
        )
        error = crashed.json()["error"]
        assert error["code"] == -32000 and "'calc'" in error["message"]
        connection = gateway.service.catalog.upstreams["calc"].connection
        gateway.call(restarted(connection, starts=2))
        again = call(
            client,
            gateway.url,
            "tok-a",
            session,
            "tools/call",
            {"name": "calc__add", "arguments": {"a": 1, "b": 2}},
        )
        assert again.json()["result"]["structuredContent"] == {"total": 3}
