"""Governance at wire speed: the table issue 19 asks for, measured in one run.

    .venv/bin/python bench/governance.py [--seconds 5] [--rounds 3] [--no-portkey]

Starts nginx as the upstream (one worker, a fixed chat completion), the bare aiohttp
relay (bench/floor.py: the Python floor), Portkey's gateway (bench/portkey, pinned),
and four seawall servers of one worker each: plain (one group, no keys); + tenants and
20 rules (a 3-level tenant tree, the key on its leaf, the 20 rules of
bench/cel_libraries.py across the chain, among them rules reading the per-request
attributes `prompt_tokens` and `client_ip`); + memory limits (RPM, TPM and concurrency
on every level, far above the load); + Redis limits instead (a `redis-server` of its
own). Then, in `--rounds` rounds, wrk measures every target in turn (c=32 for
requests per second, c=1 for the median latency), so the machine's drift falls on all
of them alike; each ratio is taken within a round and the table shows the median of
the rounds' ratios. Also measured: /v1/responses (non-stream) against chat on the plain
server, in the same rounds, with `store: false` and with `store` at its default (each
response kept, within the caller's quota; on a plain server of its own, so the others
hold no stored responses), and the idle RSS of a fresh `seawall serve` (the embedded
default, whose mock provider counts tokens) and of one serving a config that never
counts tokens (no tokenizer loaded), ready and idle.

Needs wrk and nginx (Debian), aiohttp (a dev dependency), redis-server; Portkey needs
Node.js and npm (installed into bench/portkey on first use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml
from loadgen import run_wrk, write_script
from policy_limits import TOKEN, config
from processes import free_port, redis_server, spawn, tree_rss_mb
from targets import (
    NotRun,
    ensure_portkey,
    ensure_tool,
    floor_argv,
    nginx_argv,
    portkey_argv,
    portkey_env,
    portkey_headers,
)

BENCH = Path(__file__).resolve().parent
CHAT = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}'
RESPONSES = '{"model": "gpt-4o-mini", "input": "Hello!", "store": false}'
#: The same with `store` left at its default (true): each response is kept, within the
#: caller's quota (the oldest evicted), as a client that does not opt out gets.
RESPONSES_STORED = '{"model": "gpt-4o-mini", "input": "Hello!"}'
READY_TIMEOUT_S = 60


def wait_ok(url: str, body: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(url, content=body, headers=headers, timeout=5)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered 200")


class Target:
    def __init__(self, name: str, url: str, body: str, headers: dict[str, str]) -> None:
        self.name, self.url, self.body, self.headers = name, url, body, headers
        self.rps: list[float] = []
        self.p50: list[float] = []


def measure(target: Target, wrk: str, folder: Path, seconds: int) -> None:
    script = folder / f"{abs(hash(target.name))}.lua"
    # The script sets Content-Type itself: a second one is a malformed request.
    extra = {k: v for k, v in target.headers.items() if k.lower() != "content-type"}
    write_script(script, target.body.encode(), extra)
    busy = run_wrk(wrk, target.url, script, 32, seconds)
    calm = run_wrk(wrk, target.url, script, 1, max(2, seconds // 2))
    if busy.errors or calm.errors or calm.p50_ms is None:
        raise SystemExit(f"{target.name}: {busy.errors + calm.errors} errors")
    target.rps.append(busy.rps)
    target.p50.append(calm.p50_ms)


def measure_rounds(
    targets: Iterable[Target], wrk: str, folder: Path, seconds: int, rounds: int
) -> None:
    """Every target answers, then `rounds` rounds of every target in turn: the
    machine's drift falls on all of them alike."""
    targets = list(targets)
    for target in targets:
        wait_ok(target.url, target.body, target.headers)
    for number in range(rounds):
        for target in targets:
            measure(target, wrk, folder, seconds)
        print(f"round {number + 1} done", file=sys.stderr)


def round_ratio(a: Target, b: Target, of: Callable[[Target], list[float]]) -> float:
    """The median over the rounds of a's value / b's value in the same round."""
    return statistics.median(x / y for x, y in zip(of(a), of(b), strict=True))


def added(target: Target, direct: Target) -> float:
    """The median over the rounds of what `target` adds to the upstream's c=1 p50 (ms)."""
    return statistics.median(x - y for x, y in zip(target.p50, direct.p50, strict=True))


def idle_rss(folder: Path, config: Path | None = None) -> float:
    """The RSS (MB) of a fresh `seawall serve`, ready and idle before any traffic: the
    embedded default (`config` None; its mock provider counts tokens, so its tokenizer
    is loaded at start), or `config`."""
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"]
    if config is not None:
        argv += ["--config", str(config)]
    with spawn("idle", argv, folder, folder) as server:
        ready = f"http://127.0.0.1:{port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers(ready):
            if time.monotonic() > deadline:
                raise SystemExit(f"{ready} never answered 200")
            time.sleep(0.1)
        time.sleep(1)
        return tree_rss_mb(server.pid)


def never_counting(folder: Path, upstream: int) -> Path:
    """A config that never counts tokens: one OpenAI-compatible deployment of a model
    with no known context window, no limits (so no tokenizer is loaded)."""
    path = folder / "never-counting.yaml"
    deployment = {
        "id": "local",
        "provider": "openai",
        "model": "my-local-model",
        "api_base": f"http://127.0.0.1:{upstream}/v1",
        "api_key": "sk-x",
    }
    path.write_text(yaml.safe_dump({"models": [{"name": "local", "deployments": [deployment]}]}))
    return path


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run at c=32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-portkey", action="store_true")
    args = parser.parse_args()
    wrk = ensure_tool("wrk", "wrk")
    nginx = ensure_tool("nginx", "nginx-light")
    if wrk is None or nginx is None:
        raise SystemExit("wrk and nginx are needed (apt-get install wrk nginx-light)")
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)
        upstream = free_port()
        stack.enter_context(spawn("nginx", nginx_argv(nginx, folder, upstream), folder, folder))
        json = {"content-type": "application/json"}
        keyed = {**json, "authorization": f"Bearer {TOKEN}"}
        targets: dict[str, Target] = {}
        direct = f"http://127.0.0.1:{upstream}/v1/chat/completions"
        targets["direct"] = Target("direct", direct, CHAT, json)
        floor = free_port()
        stack.enter_context(spawn("floor", floor_argv(floor, upstream), folder, folder))
        targets["floor"] = Target(
            "floor", f"http://127.0.0.1:{floor}/v1/chat/completions", CHAT, json
        )
        redis_url = stack.enter_context(redis_server())
        variants: dict[str, dict[str, Any]] = {
            "plain": dict(policies=False, limits=None),
            "rules": dict(policies=True, limits=None),
            "memory": dict(policies=True, limits="memory"),
            "redis": dict(policies=True, limits=redis_url),
        }
        for name, options in variants.items():
            port = free_port()
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config(upstream, **options)))
            argv = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
                    "--port", str(port), "--log-level", "warning"]  # fmt: skip
            stack.enter_context(spawn(name, argv, folder, folder))
            headers = keyed if options["policies"] else json
            targets[name] = Target(
                name, f"http://127.0.0.1:{port}/v1/chat/completions", CHAT, headers
            )
        plain_port = targets["plain"].url.split(":")[2].split("/")[0]
        targets["responses"] = Target(
            "responses", f"http://127.0.0.1:{plain_port}/v1/responses", RESPONSES, json
        )
        # Stored responses fill a store: on a server of their own, so the other
        # targets' process holds none of them.
        stored_port = free_port()
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(folder / "plain.yaml"),
                "--port", str(stored_port), "--log-level", "warning"]  # fmt: skip
        stack.enter_context(spawn("stored", argv, folder, folder))
        targets["stored"] = Target(
            "stored", f"http://127.0.0.1:{stored_port}/v1/responses", RESPONSES_STORED, json
        )
        if not args.no_portkey:
            try:
                ensure_portkey(folder / "portkey-install.log")
                port = free_port()
                stack.enter_context(
                    spawn("portkey", portkey_argv(port), folder, folder, env=portkey_env())
                )
                headers = {**json, **portkey_headers(upstream), "authorization": "Bearer sk-x"}
                targets["portkey"] = Target(
                    "portkey", f"http://127.0.0.1:{port}/v1/chat/completions", CHAT, headers
                )
            except NotRun as exc:
                print(f"portkey not run: {exc}", file=sys.stderr)
        measure_rounds(targets.values(), wrk, folder, args.seconds, args.rounds)
        rss = (idle_rss(folder), idle_rss(folder, never_counting(folder, upstream)))
    t = targets
    rows = [
        ("plain c=32 RPS / floor", round_ratio(t["plain"], t["floor"], lambda x: x.rps), ">= 0.7"),
        (
            "c=1 added p50 over the upstream, plain (ms; the floor adds "
            f"{added(t['floor'], t['direct']):.3f})",
            added(t["plain"], t["direct"]),
            "<= 0.4",
        ),
        (
            "tenants + 20 rules, c=32 / plain",
            round_ratio(t["rules"], t["plain"], lambda x: x.rps),
            "",
        ),
        (
            "tenants + 20 rules + memory limits, c=32 / plain",
            round_ratio(t["memory"], t["plain"], lambda x: x.rps),
            ">= 0.85",
        ),
        (
            "same with Redis limits / plain",
            round_ratio(t["redis"], t["plain"], lambda x: x.rps),
            ">= 0.75",
        ),
        ("idle RSS of one worker, a config that never counts tokens (MB)", rss[1], "<= 80"),
        ("idle RSS of one worker, the embedded default (MB; its mock counts)", rss[0], ""),
        (
            "/v1/responses non-stream, store false, c=32 / chat c=32",
            round_ratio(t["responses"], t["plain"], lambda x: x.rps),
            ">= 0.9",
        ),
        (
            "/v1/responses non-stream, stored (the default), c=32 / chat c=32",
            round_ratio(t["stored"], t["plain"], lambda x: x.rps),
            "",
        ),
    ]
    if "portkey" in t:
        rows.append(
            (
                "seawall / Portkey gateway, c=32",
                round_ratio(t["plain"], t["portkey"], lambda x: x.rps),
                ">= 3.5",
            )
        )
    print("| measure | this run | goal |")
    print("|---|---|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value:.2f} | {goal} |")
    print()
    print("| target | RPS c=32 (rounds) | p50 c=1 ms (median) |")
    print("|---|---|---|")
    for target in t.values():
        rounds = " / ".join(f"{r:,.0f}" for r in target.rps)
        print(f"| {target.name} | {rounds} | {statistics.median(target.p50):.3f} |")
    print(f"\n{args.rounds} rounds, wrk -t1, {args.seconds} s at c=32 and "
          f"{max(2, args.seconds // 2)} s at c=1 per target per round; ratios are "
          "medians of the per-round ratios")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def print_rounds(targets: Iterable[Target], rounds: int, seconds: int) -> None:
    """Every target's figures per round, and how they were taken (the benchmarks that
    compare a few servers of the governed config print this under their ratios)."""
    print("| target | RPS c=32 (rounds) | p50 c=1 ms (rounds) |")
    print("|---|---|---|")
    for target in targets:
        figures = " / ".join(f"{r:,.0f}" for r in target.rps)
        p50s = " / ".join(f"{p:.3f}" for p in target.p50)
        print(f"| {target.name} | {figures} | {p50s} |")
    print(f"{rounds} rounds, wrk -t1, {seconds} s at c=32 and "
          f"{max(2, seconds // 2)} s at c=1 per target per round")  # fmt: skip
