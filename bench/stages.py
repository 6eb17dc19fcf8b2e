"""Where a request's time goes, stage by stage: the per-stage cost table.

    .venv/bin/python bench/stages.py [--requests 3000]
    .venv/bin/python bench/stages.py --decisions [--requests 20000]

The gateway app runs in this process (its ASGI interface called directly, one request
at a time, no server, no client) against `bench/upstream.py` in another process, as
bench/instructions.py does, under three configs: plain (one group, no keys), governed
without limits (bench/policy_limits.py: a 3-level tenant tree, the key on its leaf,
the 20 rules of bench/cel_libraries.py, some reading per-request attributes) and
governed with memory limits on every level. Every stage of the chat pipeline and
every completion hook is wrapped in a timer; the table shows the mean microseconds
each took per request, after a warm-up.

What it cannot split: `Forward` includes the upstream round trip over loopback (the
upstream's own time and the kernel's), and the time outside the stages (`outside`:
the ASGI call, the Exchange, the response's send) is what the whole request took less
the stages and hooks. Wall-clock means on a shared machine move between runs; compare
the columns of one run, and count instructions (bench/instructions.py) between builds.

`--decisions` times the policy stage's core alone instead: `RuleSet.decide` for the
same 20 rules on a 3-level chain (bench/cel_libraries.py), median µs per decision
over three rounds, on a cache miss (cache off, every request different), on a hit
where the rules reading `prompt_tokens` are false (40 agents, prompts of 50,000+
tokens) and on a hit where one matches (40 agents with `max_tokens` <= 512, prompts
under 2,000 tokens), each with the rules evaluated in batches (one library call per
batch, `policies.ruleset`) and one by one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import instructions
import policy_limits
from checks import Endpoint, prompt_of, wait_ready
from processes import free_port, spawn
from upstream import MODEL

WARM_UP = 300


class Timed:
    """A stage (or completion hook) that adds the time it took to `totals[name]`."""

    def __init__(self, inner: Callable[[Any], Awaitable[None]], totals: dict[str, float]) -> None:
        self.inner = inner
        self.name = type(inner).__name__
        self.totals = totals
        totals.setdefault(self.name, 0.0)

    async def __call__(self, exchange: Any) -> None:
        start = time.perf_counter()
        try:
            await self.inner(exchange)
        finally:
            self.totals[self.name] += time.perf_counter() - start


async def measure(config: Path, body: bytes, token: str | None, requests: int) -> dict[str, float]:
    """Mean µs per request for each stage and hook, `outside` and `total`."""
    from gateway.app import create_app
    from gateway.config import load_config

    app = create_app(load_config(str(config)))
    headers = [(b"host", b"gw"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip

    async def one() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(scope, state={}), receive, send)
        if status != [200]:
            raise SystemExit(f"the gateway answered {status}")

    totals: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        pipeline = app.direct["/v1/chat/completions"].gateway.runtime.chat  # type: ignore[attr-defined]
        for _ in range(WARM_UP):
            await one()
        pipeline.stages = tuple(Timed(stage, totals) for stage in pipeline.stages)
        pipeline.completions = tuple(Timed(hook, totals) for hook in pipeline.completions)
        started = time.perf_counter()
        for _ in range(requests):
            await one()
        whole = time.perf_counter() - started
    means = {name: total / requests * 1e6 for name, total in totals.items()}
    means["outside"] = whole / requests * 1e6 - sum(means.values())
    means["total"] = whole / requests * 1e6
    return means


def decisions(requests: int) -> None:
    """`--decisions`: median µs per `RuleSet.decide`, batched and one rule at a time."""
    import cel_libraries as bench_rules

    from policies import Attributes, KnownNames, compile_policies, parse_policies
    from policies.ruleset import RuleSet

    chain = bench_rules.CHAIN
    known = KnownNames.of({chain[-1]: chain, "acme": chain[:2]}, bench_rules.DEPLOYMENTS,
                          ("night", "tight", "batch"))  # fmt: skip
    rules = policy_limits.policy_rules()  # route rules as flags, as the gateway benches

    def build(entries: int, combine: bool) -> RuleSet:
        data = {"rules": rules, "headers": list(bench_rules.HEADERS),
                "cache": {"max_entries": entries}}  # fmt: skip
        active = compile_policies(parse_policies(data), known).active
        active.combine = combine
        return active

    rng = random.Random(2)
    pool = [Attributes(**bench_rules.attributes(rng)) for _ in range(512)]
    small = [a for a in pool if a.max_tokens <= 512][:40]

    def timed(rule_set: RuleSet, request: Callable[[int], Attributes]) -> float:
        samples = []
        for i in range(requests):
            attrs = request(i)
            start = time.perf_counter_ns()
            rule_set.decide(attrs)
            samples.append(time.perf_counter_ns() - start)
        return statistics.median(samples) / 1000

    def hits(combine: bool, agents: list[Attributes], tokens: Callable[[int], int]) -> float:
        rule_set = build(4096, combine)
        for agent in agents:
            rule_set.decide(agent)
        return timed(
            rule_set,
            lambda i: dataclasses.replace(agents[i % len(agents)], prompt_tokens=tokens(i)),
        )

    rows: dict[str, dict[bool, list[float]]] = {}
    for _ in range(3):
        for combine in (True, False):
            cells = {
                "cache miss": timed(build(0, combine), lambda i: pool[i % len(pool)]),
                "cache hit, per-request rules false": hits(
                    combine, pool[:40], lambda i: 50_000 + i
                ),
                "cache hit, a per-request rule matches": hits(
                    combine, small, lambda i: 100 + i % 1000
                ),
            }
            for name, value in cells.items():
                rows.setdefault(name, {True: [], False: []})[combine].append(value)
    print("| decide(), 20 rules (median µs, 3 rounds) | batched | one call per rule |")
    print("|---|---|---|")
    for name, by_mode in rows.items():
        texts = [" / ".join(f"{v:.1f}" for v in by_mode[mode]) for mode in (True, False)]
        print(f"| {name} | " + " | ".join(texts) + " |")
    print(f"\n{requests} decisions a cell; pid {os.getpid()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--decisions", action="store_true", help="time RuleSet.decide alone")
    args = parser.parse_args()
    if args.decisions:
        decisions(args.requests if args.requests != 3000 else 20000)
        return 0
    port = free_port()
    argv = [sys.executable, str(instructions.BENCH_DIR / "upstream.py"), "--port", str(port)]
    columns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with spawn("upstream", argv, folder, folder) as upstream:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            endpoint = Endpoint(url, "sk-bench", MODEL, prompt_of(0))
            wait_ready(endpoint, False, upstream, timeout_s=30)
            variants: dict[str, tuple[bool, str | None]] = {
                "plain": (False, None),
                "tenants + 20 rules": (True, None),
                "+ memory limits": (True, "memory"),
            }
            for name, (governed, limits) in variants.items():
                sub = folder / name.replace(" ", "_").replace("+", "")
                sub.mkdir()
                config = instructions.write_config(sub, port, None, governed, limits)
                if governed:  # the wall-clock budget is the default one here
                    text = config.read_text().replace("evaluation_budget_ms: 100", "")
                    config.write_text(text)
                group = MODEL if governed else "bench"
                body = Endpoint(url, "sk-bench", group, endpoint.prompt).encoded_body(False)
                token = policy_limits.TOKEN if governed else None
                columns[name] = asyncio.run(measure(config, body, token, args.requests))
    names: list[str] = []
    for means in columns.values():
        names += [n for n in means if n not in names and n not in ("outside", "total")]
    print("| stage (mean µs per request) | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in [*names, "outside", "total"]:
        cells = [f"{means[name]:.1f}" if name in means else "—" for means in columns.values()]
        label = f"**{name}**" if name == "total" else name
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n{args.requests} requests a config, one at a time, after {WARM_UP} to warm up; "
          f"Forward includes the upstream round trip; pid {os.getpid()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
