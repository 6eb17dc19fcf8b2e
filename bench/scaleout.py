"""Throughput of 1, 2 and 4 replicas behind the round-robin balancer, on the production config.

    .venv/bin/python bench/scaleout.py [--seconds 10] [--replicas 1,2,4]

The cluster of tests/test_scaleout.py as separate processes, so each one's CPU is
measured apart: nginx as the upstream (one worker, a fixed chat completion), a
`redis-server` (limits and stored responses) and an `etcd` (the config), the Helm
chart's production config made local (tests/scaleout_support.py), N `seawall serve`
processes (one worker each) on it, and tests/balancer.py as its own process in front.
For each N: wrk (one thread, c=32, keep-alive: 32 connections, spread by the balancer
over the replicas) through the balancer, after a warm-up; then one replica alone at
c=32 without the balancer, for what the balancer costs.

Bench-only change to the config: the user key's limits (the production example gives
it requests, tokens and concurrency limits) are raised far above the load, keeping the
same three kinds on Redis, so every request pays the Redis admission it pays in
production and none is refused.

Every process here shares the machine's cores, so the table also shows each one's CPU
(% of one core over the measured window) and projects what the replicas would serve
with a core each: requests per CPU-second of a replica, times N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from loadgen import WrkResult, run_wrk, write_script
from processes import Spawned, free_port, machine_busy_s, spawn, tree_cpu_s
from targets import ensure_tool, nginx_argv

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.scaleout_support import (  # noqa: E402
    DOCUMENT,
    PREFIX,
    localize,
    production_config,
    put_documents,
)
from tests.services import EtcdServer, RedisServer  # noqa: E402

CONNECTIONS = 32
WARMUP_S = 2
READY_TIMEOUT_S = 60
#: The user key's limits in the bench: the production kinds, far above any load here.
FAR_ABOVE = {"requests_per_minute": 10**8, "tokens_per_minute": 10**12, "max_concurrent": 10**5}


@dataclass
class Row:
    name: str
    replicas: int
    result: WrkResult
    #: CPU seconds per second of the window (1.0 = one core), per process.
    cpu: dict[str, float]
    busy: float
    seconds: float

    @property
    def replica_cores(self) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith("replica"))

    @property
    def per_replica_core(self) -> float:
        """Requests per CPU-second of the replicas: what one core of replica serves."""
        return self.result.rps / self.replica_cores if self.replica_cores else 0.0


def user_key(config: dict[str, Any]) -> dict[str, Any]:
    return next(k for k in config["keys"] if "user" in k.get("roles", []) and "limits" in k)


def wait_ok(url: str, body: bytes, headers: dict[str, str], server: Spawned | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server is not None and server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited:\n{server.log_tail()}")
        try:
            answer = httpx.post(url, content=body, headers=headers, timeout=5)
            if answer.status_code == 200 and answer.json()["choices"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered a chat completion with 200")


def measure(
    name: str, url: str, script: Path, seconds: int, watched: dict[str, int], replicas: int
) -> Row:
    """wrk at c=32 on `url`, with the CPU each watched process tree used meanwhile."""
    run_wrk("wrk", url, script, CONNECTIONS, WARMUP_S)
    before = {k: tree_cpu_s(pid) for k, pid in watched.items()}
    busy_before, children = machine_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_wrk("wrk", url, script, CONNECTIONS, seconds)
    window = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {k: (tree_cpu_s(pid) - before[k]) / window for k, pid in watched.items()}
    # wrk is the only child reaped during the window: its CPU is the rusage delta.
    wrk_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    cpu["wrk"] = wrk_s / window
    busy = (machine_busy_s() - busy_before) / window
    return Row(name, replicas, result, cpu, busy, window)


@contextmanager
def replicas_up(
    n: int, etcd: EtcdServer, env: dict[str, str], scratch: Path, logs: Path
) -> Iterator[list[tuple[Spawned, int]]]:
    spec = f"etcd://{etcd.endpoint}{PREFIX}"
    with ExitStack() as stack:
        started = []
        for i in range(n):
            port = free_port()
            argv = [sys.executable, "-m", "gateway", "serve", "--config", spec,
                    "--host", "127.0.0.1", "--port", str(port),
                    "--log-level", "warning", "--no-access-log"]  # fmt: skip
            started.append(
                (stack.enter_context(spawn(f"replica{n}-{i}", argv, scratch, logs, env)), port)
            )
        yield started


def run(seconds: int, counts: list[int]) -> list[Row]:
    nginx = ensure_tool("nginx", "nginx-light")
    if nginx is None or ensure_tool("wrk", "wrk") is None:
        raise SystemExit("nginx and wrk are needed (Debian: nginx-light, wrk)")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        scratch = Path(folder)
        logs = scratch / "logs"
        logs.mkdir()
        redis = RedisServer().start()
        stack.callback(redis.stop)
        etcd = EtcdServer().start()
        stack.callback(etcd.stop)
        upstream_port = free_port()
        upstream = stack.enter_context(
            spawn("nginx", nginx_argv(nginx, scratch, upstream_port), scratch, logs)
        )
        source = production_config()
        local = localize(source.config, redis.url, f"http://127.0.0.1:{upstream_port}")
        key = user_key(local.config)
        key["limits"] = {**key["limits"], **FAR_ABOVE}
        put_documents(etcd, {DOCUMENT: local.document})
        print(f"config: {source.origin}", file=sys.stderr)
        model = local.config["models"][0]["name"]
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Hello there, how are you?"}]}
        ).encode()
        auth = {"authorization": f"Bearer {local.tokens[key['id']]}"}
        script = scratch / "post.lua"
        write_script(script, body, auth)
        headers = {"content-type": "application/json", **auth}
        env = {**os.environ, **local.env}
        shared = {"upstream": upstream.pid, "redis": _pid(redis), "etcd": _pid(etcd)}
        for n in counts:
            with replicas_up(n, etcd, env, scratch, logs) as replicas:
                for server, port in replicas:
                    wait_ok(f"http://127.0.0.1:{port}/v1/chat/completions", body, headers, server)
                balancer_port = free_port()
                argv = [sys.executable, "-m", "tests.balancer", "--port", str(balancer_port)]
                for _, port in replicas:
                    argv += ["--backend", f"127.0.0.1:{port}"]
                with spawn(f"balancer{n}", argv, REPO, logs) as balancer:
                    url = f"http://127.0.0.1:{balancer_port}/v1/chat/completions"
                    wait_ok(url, body, headers, balancer)
                    watched = {f"replica{i}": s.pid for i, (s, _) in enumerate(replicas)}
                    watched |= {"balancer": balancer.pid, **shared}
                    print(f"measuring {n} replica(s) through the balancer ...", file=sys.stderr)
                    rows.append(
                        measure(f"{n} behind the balancer", url, script, seconds, watched, n)
                    )
                if n == 1:
                    server, port = replicas[0]
                    direct = f"http://127.0.0.1:{port}/v1/chat/completions"
                    alone = {"replica0": server.pid, **shared}
                    print("measuring 1 replica directly ...", file=sys.stderr)
                    rows.append(measure("1, no balancer", direct, script, seconds, alone, 1))
    return rows


def _pid(server: RedisServer | EtcdServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def table(rows: list[Row]) -> str:
    lines = [
        "| replicas | RPS c=32 | p50 ms | p99 ms | errors | CPU per replica % | balancer % "
        "| upstream % | Redis % | wrk % | machine busy % | RPS per replica-core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        per = [v for k, v in row.cpu.items() if k.startswith("replica")]
        lines.append(
            f"| {row.name} | {row.result.rps:,.0f} | {row.result.p50_ms or 0:.1f} "
            f"| {row.result.p99_ms or 0:.1f} | {row.result.errors} "
            f"| {' / '.join(f'{100 * v:.0f}' for v in per)} "
            f"| {100 * row.cpu.get('balancer', 0):.0f} | {100 * row.cpu['upstream']:.0f} "
            f"| {100 * row.cpu['redis']:.0f} | {100 * row.cpu['wrk']:.0f} "
            f"| {100 * row.busy:.0f} | {row.per_replica_core:,.0f} |"
        )
    return "\n".join(lines)


def projection(rows: list[Row]) -> str:
    """What the measured costs say for replicas with a core each (module doc): a range,
    from the most replicas per core measured (least batching, most switching) to the
    best row."""
    measured = [row for row in rows if row.result.rps and row.replica_cores]
    high = max(row.per_replica_core for row in measured)
    low = max(measured, key=lambda row: row.replicas).per_replica_core
    redis_per_request = max(row.cpu["redis"] / row.result.rps for row in measured)
    ceiling = 1 / redis_per_request if redis_per_request else float("inf")
    lines = [
        f"machine: {os.cpu_count()} cores; every process above shares them, so RPS cannot",
        "grow with replicas here: read the CPU columns.",
        "a replica with a core of its own (low: its cost when packed as here; high: the",
        f"best row): ~{low:,.0f}-{high:,.0f} requests/s; "
        f"4 replicas: ~{4 * low:,.0f}-{4 * high:,.0f}; 12: ~{12 * low:,.0f}-{12 * high:,.0f},",
        f"until one Redis core saturates near {ceiling:,.0f} requests/s "
        f"({1e6 * redis_per_request:.0f} µs of Redis CPU per request, the highest row).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per row")
    parser.add_argument("--replicas", default="1,2,4", help="comma-separated replica counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    rows = run(args.seconds, counts)
    print(table(rows))
    print()
    print(projection(rows))
    failed = [row.name for row in rows if row.result.errors]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
