"""The HTTP server under the gateway: uvicorn's guarded httptools protocol against granian.

    .venv/bin/python bench/servers.py [--seconds 5] [--rounds 3] [--no-bare]

Starts nginx as the upstream (as bench/governance.py does), then the same app, on the
same plain config (one model group pointing at nginx, no keys, no limits:
bench/policy_limits.py's `config(upstream, policies=False, limits=None)`), served by:

- `uvicorn`: `python -m gateway serve` (uvicorn + uvloop + the guarded httptools
  protocol of gateway/server/protocol.py: what seawall ships);
- `granian`: granian 2.x, `--interface asgi --workers 1 --loop uvloop --http 1`, the app
  taken from a module generated in the scratch directory
  (`app = create_app(load_config(PATH))`); its ASGI lifespan starts the gateway;
- `bare` (unless `--no-bare`): plain `uvicorn --loop uvloop --http httptools` on the same
  generated module, i.e. uvicorn's own httptools protocol without the guard, to tell
  the guard's cost from the server's.

Then, in `--rounds` interleaved rounds, wrk measures each (c=32 for requests per
second, c=1 for the median latency; bench/governance.py's `measure_rounds`), and the
script prints a markdown table with each round's RPS, the median c=1 p50 and the
ratios to `uvicorn` (medians of the per-round ratios).

Needs wrk and nginx (Debian) and granian (`.venv/bin/pip install granian`; a bench-only
requirement, not in pyproject).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml
from governance import CHAT, READY_TIMEOUT_S, Target, measure_rounds, round_ratio
from policy_limits import config
from processes import Spawned, free_port, spawn
from targets import ensure_tool, nginx_argv

APP_MODULE = "seawall_bench_app"


def app_module(folder: Path, config_path: Path) -> None:
    """The module granian (and bare uvicorn) import: the app `seawall serve` would make
    from the same config, minus the server (its front door and drain)."""
    (folder / f"{APP_MODULE}.py").write_text(
        "from gateway.app import create_app\n"
        "from gateway.config import load_config\n"
        f"app = create_app(load_config({str(config_path)!r}))\n"
    )


def granian_argv(port: int) -> list[str]:
    granian = Path(sys.executable).with_name("granian")
    return [
        str(granian), "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
        "--http", "1", "--no-ws", "--log-level", "warning",
        "--host", "127.0.0.1", "--port", str(port), f"{APP_MODULE}:app",
    ]  # fmt: skip


def bare_uvicorn_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
        "--ws", "none", "--lifespan", "on", "--no-access-log", "--no-server-header",
        "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port),
        f"{APP_MODULE}:app",
    ]  # fmt: skip


def wait_ready(server: Spawned, url: str) -> None:
    """A 200 from `url`, or exit with the server's last words (a failed lifespan, an
    import error) instead of waiting out the timeout."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(
                f"{server.name} exited {server.process.returncode} before answering:\n"
                f"{server.log_tail(30)}"
            )
        try:
            answer = httpx.post(
                url, content=CHAT, headers={"content-type": "application/json"}, timeout=5
            )
            if answer.status_code == 200:
                return
            print(f"{server.name}: {answer.status_code} {answer.text[:200]}", file=sys.stderr)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} ({server.name}) never answered 200:\n{server.log_tail(30)}")


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run at c=32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-bare", action="store_true", help="skip unguarded uvicorn")
    args = parser.parse_args()
    if version("granian") == "missing":
        raise SystemExit("granian is needed (.venv/bin/pip install granian)")
    wrk = ensure_tool("wrk", "wrk")
    nginx = ensure_tool("nginx", "nginx-light")
    if wrk is None or nginx is None:
        raise SystemExit("wrk and nginx are needed (apt-get install wrk nginx-light)")
    json = {"content-type": "application/json"}
    labels = {
        "uvicorn": "uvicorn + guarded httptools (`seawall serve`)",
        "granian": "granian ASGI (uvloop, HTTP/1)",
        "bare": "uvicorn + httptools, unguarded",
    }
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)
        upstream = free_port()
        stack.enter_context(spawn("nginx", nginx_argv(nginx, folder, upstream), folder, folder))
        path = folder / "plain.yaml"
        path.write_text(yaml.safe_dump(config(upstream, policies=False, limits=None)))
        app_module(folder, path)
        ports = {name: free_port() for name in labels}
        argvs = {
            "uvicorn": [sys.executable, "-m", "gateway", "serve", "--config", str(path),
                        "--port", str(ports["uvicorn"]), "--log-level", "warning"],
            "granian": granian_argv(ports["granian"]),
            "bare": bare_uvicorn_argv(ports["bare"]),
        }  # fmt: skip
        if args.no_bare:
            del argvs["bare"]
        targets: dict[str, Target] = {}
        servers: list[Spawned] = []
        for name, argv in argvs.items():
            # cwd is the scratch folder: the generated module is importable from there.
            pythonpath = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
            env = {**os.environ, "PYTHONPATH": pythonpath}
            server = stack.enter_context(spawn(name, argv, folder, folder, env=env))
            url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
            wait_ready(server, url)
            servers.append(server)
            targets[name] = Target(labels[name], url, CHAT, json)
        measure_rounds(targets.values(), wrk, folder, args.seconds, args.rounds)
        for server in servers:  # a lifespan warning, a dropped connection: said, not lost
            said = server.log_tail(20).strip()
            print(f"--- {server.name} log: {said or '(empty)'}", file=sys.stderr)
    base = targets["uvicorn"]
    print("| server | RPS c=32 (rounds) | / uvicorn (median) | p50 c=1 ms (median) "
          "| / uvicorn (median) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for target in targets.values():
        rounds = " / ".join(f"{r:,.0f}" for r in target.rps)
        rps = round_ratio(target, base, lambda x: x.rps)
        p50 = round_ratio(target, base, lambda x: x.p50)
        print(
            f"| {target.name} | {rounds} | {rps:.2f} | "
            f"{statistics.median(target.p50):.3f} | {p50:.2f} |"
        )
    print(
        f"\n{args.rounds} rounds, wrk -t1, {args.seconds} s at c=32 and "
        f"{max(2, args.seconds // 2)} s at c=1 per server per round; one worker each; "
        f"granian {version('granian')}, uvicorn {version('uvicorn')}, "
        f"httptools {version('httptools')}, uvloop {version('uvloop')}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
