"""MCP servers and helpers for the tests of toolservers/.

`python -m tests.toolservers_support stdio|http PORT [NAME]` runs a FastMCP server
with a handful of tools chosen for what the gateway must handle: a structured
result with an output schema (`add`), plain text (`echo`), a result that breaks its
own output schema (`liar`), a large result (`big`), a slow tool (`slow`), an
idempotent and a destructive one (annotations), a tool whose name is not a valid
function name once namespaced (`dotted.name`), a resource and a prompt. `crash`
makes the process exit (supervision tests).

Readiness is polled (the port accepting), never a fixed sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"
EVERYTHING = (
    NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)


class Sum(BaseModel):
    total: int


def build(name: str = "calc") -> Any:
    from fastmcp import FastMCP

    server = FastMCP(name)

    @server.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
    def add(a: int, b: int) -> Sum:
        """Adds two integers."""
        return Sum(total=a + b)

    @server.tool(annotations={"readOnlyHint": True})
    def echo(text: str) -> str:
        """Says it back."""
        return f"echo: {text}"

    @server.tool(
        output_schema={
            "type": "object",
            "properties": {"total": {"type": "integer"}},
            "required": ["total"],
        }
    )
    def liar() -> Any:
        """Claims an integer, returns a string."""
        from fastmcp.tools.base import ToolResult

        return ToolResult(
            content=[{"type": "text", "text": '{"total": "many"}'}],
            structured_content={"total": "many"},
        )

    @server.tool(annotations={"readOnlyHint": True})
    def big(kib: int) -> str:
        """Returns kib KiB of text."""
        return "x" * (kib * 1024)

    @server.tool(annotations={"destructiveHint": True})
    async def slow(ms: int) -> str:
        """Sleeps, then answers."""
        import anyio

        await anyio.sleep(ms / 1000)
        return "done"

    @server.tool(name="dotted.name")
    def dotted() -> str:
        """A name MCP allows and OpenAI function names do not."""
        return "dotted"

    @server.tool
    def crash() -> str:
        """Ends the server process at once."""
        os._exit(3)

    @server.tool
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.resource("memo://greeting", name="greeting", mime_type="text/plain")
    def greeting() -> str:
        return "hello from the resource"

    @server.prompt
    def review(topic: str) -> str:
        """A prompt with an argument."""
        return f"Please review {topic}."

    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def stdio_argv(name: str = "calc") -> list[str]:
    return [sys.executable, "-m", "tests.toolservers_support", "stdio", "0", name]


@contextmanager
def http_server(name: str = "calc", json_response: bool = False, port: int = 0) -> Iterator[str]:
    """A FastMCP server over Streamable HTTP in a child process; yields its URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "tests.toolservers_support", "http", str(port), name]
    if json_response:
        argv.append("json")
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def everything_http() -> Iterator[str]:
    """`@modelcontextprotocol/server-everything` over Streamable HTTP; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        cwd=NODE_DIR,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    name = sys.argv[3] if len(sys.argv) > 3 else "calc"
    server = build(name)
    if mode == "stdio":
        server.run("stdio", show_banner=False)
    else:
        json_response = len(sys.argv) > 4 and sys.argv[4] == "json"
        server.run(
            "http",
            host="127.0.0.1",
            port=port,
            show_banner=False,
            json_response=json_response,
            log_level="warning",
        )


if __name__ == "__main__":
    main()


# -- the gateway side, as the wiring will do it -------------------------------------------

RECEIPT_SECRET = "test-receipt-secret-0123456789"


def receipts() -> Any:
    from tools.config import ReceiptsConfig
    from tools.receipts import Receipts

    return Receipts(
        ReceiptsConfig.model_validate({"keys": [{"id": "k1", "secret": RECEIPT_SECRET}]})
    )


def starlette_app(service: Any, callers: dict[str, Any]) -> Any:
    """A `/mcp` route over `McpService.http`, with bearer keys mapped to callers: what
    the gateway's route will be, minus its authentication and metrics."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        caller = callers.get(token)
        if caller is None:
            return JSONResponse({"error": "invalid_api_key"}, status_code=401)
        headers = {k.lower(): v for k, v in request.headers.items()}
        http = service.http
        if request.method == "POST":
            answer = await http.post(caller, headers, await request.body())
        elif request.method == "GET":
            answer = await http.get(caller, headers)
        else:
            answer = await http.delete(caller, headers)
        if answer.stream is not None:
            return StreamingResponse(
                answer.stream, status_code=answer.status, headers=answer.headers
            )
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    return Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])


class ThreadedGateway:
    """`/mcp` served by uvicorn in a thread with its own event loop: the upstream
    connections and stdio children live in that loop, clients run in the test's.
    Started and stopped explicitly; readiness is uvicorn's `started` flag."""

    def __init__(self, config: Any, callers: dict[str, Any]) -> None:
        import asyncio
        import threading

        self.config = config
        self.callers = callers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.service: Any = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        import uvicorn

        from toolservers.service import McpService, UpstreamPool

        try:
            self.pool = UpstreamPool()
            upstreams = await self.pool.sync(self.config)
            self.service = McpService(self.config, upstreams, receipts())
            app = starlette_app(self.service, self.callers)
            self.server = uvicorn.Server(
                uvicorn.Config(
                    app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
                )
            )
            serving = self.loop.create_task(self.server.serve())
            while not self.server.started and not serving.done():
                await asyncio_sleep(0.01)
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise
        self._ready.set()
        await serving
        await self.pool.close()

    def start(self) -> ThreadedGateway:
        self._thread.start()
        if not self._ready.wait(60) or self._failed is not None:
            raise RuntimeError(f"the gateway did not start: {self._failed!r}")
        return self

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        """Runs `coroutine` in the gateway's loop (to touch its upstreams)."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
