"""The upstream connectors against real servers: FastMCP over Streamable HTTP (SSE
and JSON answers) and over stdio, `@modelcontextprotocol/server-everything` over
both; supervision of stdio children; deadlines, the breaker, safe retries."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.toolservers_support import (
    EVERYTHING,
    ROOT,
    everything_http,
    free_port,
    http_server,
    stdio_argv,
)
from toolservers.config import McpConfig
from toolservers.upstream import ProtocolViolation, ServerDown, ServerTimeout, Upstream
from toolservers.upstream.base import RemoteError


def server(**fields: Any) -> Any:
    return McpConfig.model_validate({"servers": [fields]}).servers[0]


def calc_stdio(**extra: Any) -> Any:
    argv = stdio_argv()
    return server(
        name="calc", transport="stdio", command=argv[0], args=argv[1:], cwd=str(ROOT), **extra
    )


@pytest.fixture(scope="module")
def calc_url() -> Iterator[str]:
    with http_server() as url:
        yield url


@pytest.fixture(scope="module")
def calc_json_url() -> Iterator[str]:
    with http_server(json_response=True) as url:
        yield url


@pytest.mark.parametrize("which", ["sse", "json"])
async def test_fastmcp_over_streamable_http(which: str, calc_url: str, calc_json_url: str) -> None:
    url = calc_url if which == "sse" else calc_json_url
    upstream = Upstream(server(name="calc", transport="http", url=url))
    try:
        tools = {tool["name"]: tool for tool in await upstream.list_all("tools/list", "tools")}
        assert tools["add"]["annotations"]["readOnlyHint"] is True
        assert tools["add"]["outputSchema"]["properties"]["total"]["type"] == "integer"
        result = await upstream.call_tool("add", {"a": 20, "b": 22}, idempotent=True)
        assert result["structuredContent"] == {"total": 42}
        connection: Any = upstream.connection
        assert connection.session_id and connection.protocol_version == "2025-11-25"
        resources = await upstream.list_all("resources/list", "resources")
        assert resources[0]["uri"] == "memo://greeting"
        read = await upstream.request("resources/read", {"uri": "memo://greeting"})
        assert read["contents"][0]["text"] == "hello from the resource"
        with pytest.raises(RemoteError):
            await upstream.request("prompts/get", {"name": "nope"})
    finally:
        await upstream.close()


async def test_everything_over_streamable_http() -> None:
    with everything_http() as url:
        upstream = Upstream(server(name="every", transport="http", url=url))
        try:
            names = [tool["name"] for tool in await upstream.list_all("tools/list", "tools")]
            assert "get-sum" in names
            result = await upstream.call_tool("get-sum", {"a": 1, "b": 2}, idempotent=True)
            assert "3" in result["content"][0]["text"]
            structured = await upstream.call_tool(
                "get-structured-content", {"location": "New York"}, idempotent=True
            )
            assert "temperature" in structured["structuredContent"]
        finally:
            await upstream.close()


async def test_everything_over_stdio_and_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child gets the configured variables and the harmless inherited ones,
    never the gateway's own secrets."""
    monkeypatch.setenv("SEAWALL_PROVIDER_KEY", "sk-must-not-leak")
    monkeypatch.setenv("MCP_TOKEN_SOURCE", "configured-value")
    upstream = Upstream(
        server(
            name="every",
            transport="stdio",
            command="node",
            args=[str(EVERYTHING), "stdio"],
            env={"GREETING": "hi", "TOKEN": "env:MCP_TOKEN_SOURCE"},
        )
    )
    try:
        await upstream.start()
        result = await upstream.call_tool("get-env", {}, idempotent=True)
        text = result["content"][0]["text"]
        assert '"GREETING": "hi"' in text and "configured-value" in text
        assert "sk-must-not-leak" not in text and "SEAWALL_PROVIDER_KEY" not in text
    finally:
        await upstream.close()


async def test_stdio_child_is_restarted_after_it_dies() -> None:
    upstream = Upstream(calc_stdio(restart={"initial_backoff_ms": 50}))
    connection: Any = upstream.connection
    try:
        await upstream.start()
        first = (await upstream.call_tool("pid", {}, idempotent=False))["structuredContent"][
            "result"
        ]
        slow = asyncio.create_task(upstream.call_tool("slow", {"ms": 20_000}, idempotent=False))
        while not connection._pending:  # noqa: ASYNC110 (the call is in flight)
            await asyncio.sleep(0.01)
        os.kill(first, 9)
        started = time.monotonic()
        with pytest.raises(ServerDown, match="'calc'"):
            await slow
        assert time.monotonic() - started < 5  # failed at once, not at the deadline
        async with asyncio.timeout(30):
            while connection.state != "ready":  # noqa: ASYNC110 (polling a child process's state)
                await asyncio.sleep(0.01)
        second = (await upstream.call_tool("pid", {}, idempotent=False))["structuredContent"][
            "result"
        ]
        assert second != first and connection.starts == 2
    finally:
        await upstream.close()
    assert connection._process.returncode is not None  # stopped cleanly at close


@pytest.mark.parametrize(
    ("command", "args", "reason"),
    [
        ("/nonexistent/mcp-server", [], "cannot be started"),
        (sys.executable, ["-c", "import sys; sys.exit(2)"], "status 2"),
        (
            sys.executable,
            ["-c", "import time; time.sleep(60)"],
            "did not answer initialize within 300 ms",
        ),
    ],
)
async def test_a_server_that_never_starts_is_a_clear_error(
    command: str, args: list[str], reason: str
) -> None:
    upstream = Upstream(
        server(
            name="broken",
            transport="stdio",
            command=command,
            args=args,
            timeout_ms=300,
            restart={"initial_backoff_ms": 5000, "stop_grace_ms": 100},
        )
    )
    try:
        with pytest.raises(ServerDown):
            await upstream.start()
        connection: Any = upstream.connection
        async with asyncio.timeout(10):
            while connection.state != "down":  # noqa: ASYNC110 (polling a child process's state)
                await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(ServerDown, match=reason) as caught:
            await upstream.call_tool("anything", {}, idempotent=True)
        assert time.monotonic() - started < 0.5  # at once: no hang, no wait for the backoff
        assert "next start in" in caught.value.message or "being restarted" in caught.value.message
        assert "/nonexistent" not in caught.value.message  # no command line in errors
    finally:
        await upstream.close()


async def test_deadlines_and_the_breaker(calc_url: str) -> None:
    upstream = Upstream(
        server(
            name="calc",
            transport="http",
            url=calc_url,
            call_timeout_ms=300,
            breaker={"consecutive_failures": 2, "open_seconds": 60},
        )
    )
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(ServerTimeout, match="within 300 ms"):
                await upstream.call_tool("slow", {"ms": 5000}, idempotent=False)
            assert time.monotonic() - started < 2
        with pytest.raises(ServerDown, match="circuit breaker is open"):
            await upstream.call_tool("add", {"a": 1, "b": 1}, idempotent=True)
    finally:
        await upstream.close()


async def test_unreachable_server_names_no_host() -> None:
    port = free_port()
    upstream = Upstream(
        server(name="gone", transport="http", url=f"http://user:pw@127.0.0.1:{port}/mcp")
    )
    try:
        with pytest.raises(ServerDown) as caught:
            await upstream.call_tool("add", {}, idempotent=True)
        assert caught.value.message == "MCP server 'gone' cannot be reached"
    finally:
        await upstream.close()


async def test_retries_only_idempotent_calls() -> None:
    attempts: list[str] = []

    class Flaky:
        on_notification = None
        initialize_result: dict[str, Any] | None = {"capabilities": {}}

        async def start(self) -> None: ...

        async def close(self) -> None: ...

        async def notify(self, method: str, params: Any = None) -> None: ...

        async def request(
            self, method: str, params: Any, limit_s: float, on_notification: Any = None
        ) -> dict[str, Any]:
            attempts.append(params["name"])
            if len(attempts) % 2:
                raise ServerDown("MCP server 'flaky' cannot be reached")
            return {"content": []}

    config = server(
        name="flaky",
        transport="http",
        url="http://127.0.0.1:1/mcp",
        retry={"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 1},
    )
    upstream = Upstream(config, Flaky())
    assert await upstream.call_tool("read", {}, idempotent=True) == {"content": []}
    assert attempts == ["read", "read"]
    with pytest.raises(ServerDown):
        await upstream.call_tool("write", {}, idempotent=False)
    assert attempts == ["read", "read", "write"]


async def test_a_dropped_upstream_session_is_renewed() -> None:
    port = free_port()
    with http_server(port=port) as url:
        upstream = Upstream(server(name="calc", transport="http", url=url))
        await upstream.call_tool("add", {"a": 1, "b": 1}, idempotent=True)
        connection: Any = upstream.connection
        first = connection.session_id
    with http_server(port=port):  # the same address, a new server: the session is unknown
        try:
            result = await upstream.call_tool("add", {"a": 2, "b": 2}, idempotent=True)
            assert result["structuredContent"] == {"total": 4}
            assert connection.session_id != first
        finally:
            await upstream.close()


async def test_messages_are_size_bounded(calc_url: str) -> None:
    upstream = Upstream(
        server(name="calc", transport="http", url=calc_url, max_message_bytes=64 * 1024)
    )
    try:
        with pytest.raises(ProtocolViolation, match="larger than 65536 bytes"):
            await upstream.call_tool("big", {"kib": 256}, idempotent=True)
        assert (await upstream.call_tool("big", {"kib": 1}, idempotent=True))["content"]
    finally:
        await upstream.close()
