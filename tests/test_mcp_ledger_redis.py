"""The MCP result ledger shared in Redis by gateway replicas (`mcp.ledger.store`).

Agents that drop `_meta` (the OpenAI Agents SDK does) show an MCP result to the model
without its receipt; only the ledger can vouch for it, and the model request may
reach another replica than the `/mcp` call did. Two gateways with their own State
share one real `redis-server`: a result served by one is recognised by the other,
and an altered one is still caught; a gateway with the memory ledger, the same
request, says forged (what the shared ledger fixes); OpenAI's Agents SDK with its MCP
server on one replica and its model on the other runs its loop through. The wall: `red` (every role)
floods the ledger with its own results and shows `blue`'s result under its own key;
`blue`'s results stay recognised and red's are refused. Redis down: a tool message
without a receipt is refused at once with 503 (`fail_closed`) or passes flagged
(`fail_open`); receipts and `/mcp` calls keep working, and nothing names Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis

from tests.isolation import chat
from tests.services import RedisServer, redis_server
from tests.support import ServerThread, running_gateway
from tests.test_mcp_gateway import (
    BLUE,
    RED,
    agent_run,
    call_tool,
    config,
    initialize,
    responses_turn,
    tool_turn,
)

#: Red's flood: far more results than its tenant's bytes hold.
FLOOD = 60
TENANT_BYTES = 4096


def shared_ledger(url: str, **ledger: Any) -> dict[str, Any]:
    built = config()
    built["mcp"]["ledger"] = {"store": url, "max_bytes_per_tenant": TENANT_BYTES, **ledger}
    return built


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[RedisServer, ServerThread, ServerThread]]:
    with (
        redis_server() as redis,
        running_gateway(shared_ledger(redis.url)) as a,
        running_gateway(shared_ledger(redis.url)) as b,
    ):
        yield redis, a, b


def served_result(gateway: ServerThread, key: str, tool: str, arguments: Any) -> str:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        session = initialize(client, key)
        result = call_tool(client, key, session, tool, arguments)["result"]
    assert "seawall_receipt" in result["_meta"]
    text: str = result["content"][0]["text"]
    return text


def shown(gateway: ServerThread, key: str, tool: str, arguments: str, text: str) -> httpx.Response:
    """The agent's next model turn, on `gateway`, with the result and no receipt."""
    return chat(gateway.url, key, json=tool_turn(tool, arguments, text, None))


def test_a_result_served_by_one_replica_is_recognised_by_another(
    replicas: tuple[RedisServer, ServerThread, ServerThread],
) -> None:
    _, a, b = replicas
    text = served_result(a, BLUE, "calc__add", {"a": 2, "b": 3})
    assert shown(b, BLUE, "calc__add", '{"b": 3, "a": 2}', text).status_code == 200
    forged = shown(b, BLUE, "calc__add", '{"a": 2, "b": 3}', text.replace("5", "6"))
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "tool_result_forged"
    # The Responses API (an Agents SDK's turn): the result as a function_call_output.
    answer = responses_turn(b.url, "calc__add", '{"a":2,"b":3}', text)
    assert answer.status_code == 200, answer.text
    # Each replica keeps its own memory ledger without the shared one: the same turn
    # on another gateway is a forgery there.
    with running_gateway(config()) as alone:
        refused = shown(alone, BLUE, "calc__add", '{"b": 3, "a": 2}', text)
    assert refused.json()["error"]["code"] == "tool_result_forged"


async def test_an_agent_whose_calls_land_on_two_replicas(
    replicas: tuple[RedisServer, ServerThread, ServerThread],
) -> None:
    """OpenAI's Agents SDK with its MCP server on one replica and its model on the
    other, as a load balancer may split them: the SDK drops `_meta`, the shared
    ledger vouches for the result; forged on the way, it is refused."""
    import openai

    _, a, b = replicas
    result = await agent_run(a.url, model_url=b.url)
    assert str(result.final_output).startswith("The tool returned: ")
    with pytest.raises(openai.BadRequestError) as refused:
        await agent_run(a.url, "forge_tool;mode=wrong;target=tool:calc__add", model_url=b.url)
    assert refused.value.code == "tool_result_forged"


def test_a_sibling_flooding_the_ledger_evicts_only_its_own(
    replicas: tuple[RedisServer, ServerThread, ServerThread],
) -> None:
    redis, a, b = replicas
    victim = served_result(a, BLUE, "calc__echo", {"text": "blue's secret plan"})
    flood = [served_result(a, RED, "calc__echo", {"text": f"red flood {n}"}) for n in range(FLOOD)]
    client = sync_redis.Redis.from_url(redis.url)
    held = {t.decode(): int(v) for t, v in client.hgetall("seawall:ledger:tb").items()}
    assert 0 < held["red"] <= TENANT_BYTES
    # Red's oldest results went (its own), blue's did not: on the other replica too.
    arguments = '{"text": "blue\'s secret plan"}'
    assert shown(b, BLUE, "calc__echo", arguments, victim).status_code == 200
    first = shown(b, RED, "calc__echo", '{"text": "red flood 0"}', flood[0])
    assert first.json()["error"]["code"] == "tool_result_forged"
    last = f'{{"text": "red flood {FLOOD - 1}"}}'
    assert shown(b, RED, "calc__echo", last, flood[-1]).status_code == 200
    # Blue's genuine result, shown under red's key, is not red's to show.
    stolen = shown(b, RED, "calc__echo", arguments, victim)
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "tool_result_forged"


def test_redis_down_refuses_or_flags_at_once_and_names_nothing(redis: RedisServer) -> None:
    closed_config = shared_ledger(redis.url, store_timeout_ms=300)
    open_config = shared_ledger(redis.url, store_timeout_ms=300, on_store_failure="fail_open")
    with running_gateway(closed_config) as closed, running_gateway(open_config) as opened:
        with httpx.Client(base_url=closed.url, timeout=30) as client:
            session = initialize(client, BLUE)
            result = call_tool(client, BLUE, session, "calc__add", {"a": 1, "b": 1})["result"]
            text, receipt = result["content"][0]["text"], result["_meta"]["seawall_receipt"]
            redis.kill()
            started = time.monotonic()
            refused = shown(closed, BLUE, "calc__add", '{"a": 1, "b": 1}', text)
            assert time.monotonic() - started < 3
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "tool_result_ledger_unavailable"
            assert str(redis.port) not in refused.text and "redis" not in refused.text.lower()
            # A receipt needs no ledger; /mcp calls are still served (not recorded).
            turn = tool_turn("calc__add", '{"a": 1, "b": 1}', text, receipt)
            assert chat(closed.url, BLUE, json=turn).status_code == 200
            again = call_tool(client, BLUE, session, "calc__add", {"a": 2, "b": 2})["result"]
            assert "seawall_receipt" in again["_meta"]
        flagged = shown(opened, BLUE, "calc__add", '{"a": 1, "b": 1}', text)
        assert flagged.status_code == 200, flagged.text
        assert ":unverified:" in flagged.headers["x-seawall-tool-violations"]
        metrics = httpx.get(
            f"{closed.url}/metrics", headers={"authorization": "Bearer root-admin"}, timeout=10
        ).text
    assert 'seawall_mcp_ledger_lost_total{reason="unrecorded"} 1.0' in metrics
    errors = next(
        x for x in metrics.splitlines() if x.startswith("seawall_mcp_ledger_errors_total")
    )
    assert float(errors.split()[-1]) >= 2
