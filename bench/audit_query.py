"""The audit index at a million records: how fast it builds, how fast it answers.

    .venv/bin/python bench/audit_query.py                    # 1M records, ~3 minutes
    .venv/bin/python bench/audit_query.py --records 100000   # a quick look

Writes synthetic request records (20 tenants in a three-level tree, 100 keys, 10
model groups over 50 deployments, ~3% errors, log-normal latencies, policy rules,
flags and limit refusals, content for one opted-in org) as real segment files in a
temporary directory, spread over a week ending now, in two streams with a checkpoint
every 1,000 records; indexes them (`AuditIndex.update()`: the first build, then an
incremental update after 10,000 more), and times typical queries through
`audit.query` (median of several runs, warm page cache). Prints Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit.index import AuditIndex  # noqa: E402
from audit.query import Filter, aggregate, search  # noqa: E402

SEED = 20261207
WEEK = 7 * 86400
PER_SEGMENT = 100_000
CHECKPOINT_EVERY = 1_000

ORGS = ["acme", "globex", "initech", "umbrella"]
WORDS = [f"w{i}" for i in range(2_000)]
RULES = ("deny-pii", "pin-eu", "flag-long", "class-batch")


def tenant_tree() -> list[list[str]]:
    """4 orgs, 2 teams each, 1 project under each team: 20 tenants below the root."""
    chains: list[list[str]] = []
    for org in ORGS:
        chains.append(["root", org])
        for team in ("core", "apps"):
            chains.append(["root", org, f"{org}-{team}"])
            chains.append(["root", org, f"{org}-{team}", f"{org}-{team}-p"])
    return chains


class Synth:
    """Realistic-looking request records, deterministic from the seed."""

    def __init__(self, records: int, end: float) -> None:
        self.rng = random.Random(SEED)
        self.records = records
        self.end = end
        self.start = end - WEEK
        self.chains = tenant_tree()
        self.leaves = [chain for chain in self.chains if len(chain) > 2]
        self.keys = [(f"key-{i:03d}", self.rng.choice(self.leaves)) for i in range(100)]
        self.models = [f"model-{i}" for i in range(10)]
        self.deployments = {m: [f"{m}-d{j}" for j in range(5)] for m in self.models}

    def record(self, i: int) -> dict[str, Any]:
        rng = self.rng
        key, chain = rng.choice(self.keys)
        model = self.models[min(int(rng.expovariate(0.4)), 9)]
        deployment = rng.choice(self.deployments[model])
        roll = rng.random()
        status, error = 200, None
        if roll < 0.01:
            status, error = rng.choice([(500, "internal_error"), (502, "upstream_error")])
        elif roll < 0.02:
            status, error = 503, "no_deployment_available"
        elif roll < 0.04:
            status, error = 429, "rate_limited"
        elif roll < 0.05:
            status, error = 400, "invalid_request"
        stream = rng.random() < 0.4
        latency = rng.lognormvariate(6.0, 0.7)
        prompt_tokens = int(rng.lognormvariate(6, 1))
        completion_tokens = int(rng.lognormvariate(5, 1)) if status == 200 else 0
        refused = status == 429
        rules = [
            r for r in ("deny-pii", "pin-eu", "flag-long", "class-batch") if rng.random() < 0.2
        ]
        content = None
        if chain[1] == "acme":
            words = rng.choices(WORDS, k=20)
            if rng.random() < 0.001:
                words.append("zebracorn")
            content = {"prompt": " ".join(words[:14]), "completion": " ".join(words[14:])}
        return {
            "kind": "request",
            "time": round(self.start + WEEK * i / self.records, 6),
            "request_id": f"req-{i:09d}",
            "trace_id": f"{rng.getrandbits(128):032x}",
            "tenant": chain[-1],
            "tenants": chain,
            "key": key,
            "endpoint": "chat" if rng.random() < 0.8 else "responses",
            "model": model,
            "deployment": deployment,
            "route": [{"deployment": deployment, "outcome": "ok" if status < 500 else "timeout"}],
            "status": status,
            "error": error,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "cost": round((prompt_tokens * 0.5 + completion_tokens * 1.5) / 1e6, 8),
            "latency_ms": round(latency, 3),
            "ttft_ms": round(latency * rng.uniform(0.1, 0.4), 3) if stream else None,
            "stream": stream,
            "cut": False,
            "config_version": f"cfg-{1 + i * 5 // self.records}",
            "policy": {
                "version": "pol-1",
                "matched": rules,
                "flags": ["long"] if "flag-long" in rules else [],
                "denied": None,
                "errors": [],
            },
            "limits": [
                {"level": f"tenant:{chain[1]}", "decision": "admitted", "limit": None},
                {
                    "level": f"key:{key}",
                    "decision": "refused" if refused else "admitted",
                    "limit": "requests" if refused else None,
                },
            ],
            "guards": [],
            "chaos": None,
            "content": content,
        }


class Stream:
    """One stream's segment files, written as the writer would (chain and all)."""

    def __init__(self, log_dir: Path, name: str) -> None:
        self.dir = log_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.seq = 0
        self.head = "0" * 64
        self.file: Any = None
        self.segment = self.dir / "none"

    def append(self, record: dict[str, Any]) -> None:
        if self.seq % PER_SEGMENT == 0:
            self._roll()
        self.seq += 1
        line = orjson.dumps({"seq": self.seq, "prev": self.head, **record})
        self.head = hashlib.sha256(line).hexdigest()
        self.file.write(line + b"\n")
        if self.seq % CHECKPOINT_EVERY == 0:
            self._checkpoint()

    def _checkpoint(self) -> None:
        first = self.seq - CHECKPOINT_EVERY + 1
        body = {"kind": "checkpoint", "stream": self.name, "first": first, "last": self.seq}
        body |= {"head": self.head, "time": time.time(), "key_id": "0" * 16, "sig": "x" * 88}
        self.file.write(orjson.dumps(body) + b"\n")

    def _roll(self) -> None:
        self.close()
        self.segment = self.dir / f"{self.seq + 1:012d}.jsonl"
        self.file = self.segment.open("ab")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def write(log_dir: Path, synth: Synth, first: int, count: int, streams: list[Stream]) -> None:
    for i in range(first, first + count):
        streams[i % len(streams)].append(synth.record(i))


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms over `repeat` runs (after one warm-up), and the result."""
    result = run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def queries(index: AuditIndex, now: float, records: int) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(what, how) for each typical query."""
    hour, day = now - 3600, now - 86400
    first_page = search(index, Filter(subtree="acme", since=hour))

    yield (
        "search: subtree `acme` (7 tenants), last hour, newest 100",
        lambda: search(index, Filter(subtree="acme", since=hour)),
    )
    yield (
        "search: the same, page 2 (cursor)",
        lambda: search(index, Filter(subtree="acme", since=hour), cursor=first_page.cursor),
    )
    yield (
        "search: subtree `globex-apps-p` (a leaf), all time, newest 100",
        lambda: search(index, Filter(subtree="globex-apps-p")),
    )
    yield (
        "search: scope `acme` + key of another org (none match), all time",
        lambda: search(index, Filter(scope="acme", key="key-000")),
    )
    yield (
        "search: 5xx of `model-3`, all time, newest 100",
        lambda: search(index, Filter(model="model-3", status_class=5)),
    )
    yield (
        "search: one request id",
        lambda: search(index, Filter(request_id=f"req-{records // 2:09d}")),
    )
    yield (
        "search: refused at a key level, last day",
        lambda: search(index, Filter(refused="key:key-007", since=day)),
    )
    yield (
        "search: text `zebracorn` (rare word), all time",
        lambda: search(index, Filter(text="zebracorn")),
    )
    yield (
        "search: text `w17` (a common word), all time, newest 100",
        lambda: search(index, Filter(text="w17")),
    )
    yield (
        "aggregate: latency p50/p95/p99 by model, 1-min buckets, last day",
        lambda: aggregate(
            index,
            Filter(kind="request", since=day),
            ["model"],
            60,
            ["count", "latency_p50", "latency_p95", "latency_p99"],
        ),
    )
    yield (
        "aggregate: every metric by tenant, last day",
        lambda: aggregate(index, Filter(since=day), ["tenant"]),
    )
    yield (
        "aggregate: count, errors by matched rule, all time",
        lambda: aggregate(index, Filter(), ["rule"], None, ["count", "errors", "error_rate"]),
    )
    yield (
        "aggregate: tokens and cost by deployment, subtree `umbrella`, all time",
        lambda: aggregate(
            index,
            Filter(subtree="umbrella"),
            ["deployment"],
            None,
            ["count", "total_tokens", "cost"],
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the log and the index here (an empty directory), and keep them",
    )
    args = parser.parse_args()
    now = time.time()
    synth = Synth(args.records, now)

    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="audit-bench-"))
        log_dir = Path(tmp) / "log"
        streams = [Stream(log_dir, "worker-0"), Stream(log_dir, "worker-1")]
        started = time.perf_counter()
        write(log_dir, synth, 0, args.records, streams)
        for stream in streams:
            stream.close()
        written_s = time.perf_counter() - started
        log_bytes = sum(path.stat().st_size for path in log_dir.rglob("*.jsonl"))

        index = AuditIndex(Path(tmp) / "index.db", log_dir)
        started = time.perf_counter()
        added = index.update()
        build_s = time.perf_counter() - started
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("index.db*"))

        extra = 10_000
        for stream in streams:
            stream.file = stream.segment.open("ab")
        write(log_dir, synth, args.records, extra, streams)
        for stream in streams:
            stream.close()
        started = time.perf_counter()
        appended = index.update()
        update_s = time.perf_counter() - started
        started = time.perf_counter()
        assert index.update() == 0
        noop_ms = (time.perf_counter() - started) * 1000

        print(f"## Audit index over {added:,} records\n")
        print(f"SQLite {__import__('sqlite3').sqlite_version}, FTS5: {index.fts}; ")
        print(
            f"segments {log_bytes / 1e6:,.0f} MB ({log_bytes / added:,.0f} B/record), "
            f"written in {written_s:.1f} s; index {db_bytes / 1e6:,.0f} MB.\n"
        )
        print("| step | time | rate |")
        print("|---|---:|---:|")
        print(
            f"| first build (`update()` on an empty index) | {build_s:.1f} s | "
            f"{added / build_s:,.0f} records/s |"
        )
        print(
            f"| incremental `update()` after {appended:,} more | {update_s * 1000:.0f} ms | "
            f"{appended / update_s:,.0f} records/s |"
        )
        print(f"| `update()` with nothing new | {noop_ms:.1f} ms | |")
        print()
        print("| query | median ms | result |")
        print("|---|---:|---:|")
        for what, run in queries(index, now, args.records):
            ms, result = timed(run, args.repeat)
            if isinstance(result, list):
                shown = f"{len(result):,} rows"
            else:
                shown = f"{len(result.entries)} records" + (" + cursor" if result.cursor else "")
            print(f"| {what} | {ms:,.1f} | {shown} |")
        print()
        subtree_designs(index, now, args.repeat)
        index.close()


def subtree_designs(index: AuditIndex, now: float, repeat: int) -> None:
    """The subtree test the index uses (chain ids from the small `chains` table,
    then `records_chain`, or with that index hidden, `+chain_id`, so the planner
    walks `records_time`: what `search` does for a large subtree) against the
    alternative: a `|root|org|team|` string on every record and `LIKE '%|X|%'`,
    which no index can serve. Raw SQL each way, the string column added to this
    throwaway index for the comparison."""
    connection = index.connection
    connection.execute("ALTER TABLE records ADD COLUMN chain TEXT")
    connection.execute("UPDATE records SET chain = (SELECT path FROM chains WHERE id = chain_id)")
    ids = "chain_id IN (SELECT id FROM chains WHERE instr(path, ?) > 0)"
    designs = ((ids, "|{}|"), (f"+{ids}", "|{}|"), ("chain LIKE ?", "%|{}|%"))
    count = "SELECT COUNT(*) FROM records WHERE"
    cases = [
        ("count, subtree `acme`, last day", "acme", f"{count} time >= ? AND {{}}"),
        ("count, subtree `globex-apps-p` (a leaf), all time", "globex-apps-p", f"{count} {{}}"),
        (
            "newest 100, subtree `globex-apps-p`, all time",
            "globex-apps-p",
            "SELECT rid FROM records WHERE {} ORDER BY time DESC, stream DESC, seq DESC LIMIT 100",
        ),
    ]
    print(
        "| subtree test (ms) | chain ids | `+chain_id` (index hidden) | LIKE on a string | rows |"
    )
    print("|---|---:|---:|---:|---:|")
    for what, tenant, sql in cases:
        head: list[Any] = [now - 86400] if "last day" in what else []
        timings: list[str] = []
        answers: list[list[Any]] = []
        for condition, value in designs:
            params = [*head, value.format(tenant)]
            query = sql.format(condition)

            def run(query: str = query, params: list[Any] = params) -> list[Any]:
                return connection.execute(query, params).fetchall()

            ms, found = timed(run, repeat)
            timings.append(f"{ms:,.1f}")
            answers.append(found)
        assert all(answer == answers[0] for answer in answers)
        found = answers[0]
        rows = found[0][0] if what.startswith("count") else len(found)
        print(f"| {what} | {' | '.join(timings)} | {rows:,} |")


if __name__ == "__main__":
    main()
