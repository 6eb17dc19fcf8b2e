"""The audit index and queries against a brute-force scan of the records.

Random record sets are written as real segment files (the on-disk format of
audit/__init__.py, checkpoints between records), indexed, and every `search` and
`aggregate` answer must equal what a plain Python scan over the record dicts says
(`matches`, `brute_search`, `brute_aggregate` below: written from the documented
meaning, not from the SQL).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audit.query
from audit.index import AuditIndex
from audit.query import (
    METRICS,
    Filter,
    QueryError,
    aggregate,
    parse_filter,
    parse_query,
    render_table,
    search,
    summarize,
)
from tests.examples import examples

PREV = "ab" * 32

# A small tenant tree: root > {acme > {search, ads}, beta > {labs}}.
CHAINS = [
    ["root"],
    ["root", "acme"],
    ["root", "acme", "search"],
    ["root", "acme", "ads"],
    ["root", "beta"],
    ["root", "beta", "labs"],
]
TENANTS = ["root", "acme", "search", "ads", "beta", "labs", "nobody"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]
STATUSES = [200, 200, 201, 400, 403, 429, 500, 502, 503]
RULES = ["r1", "r2", "r3"]
FLAGS = ["pii", "long"]
LEVELS = ["key:k1", "tenant:acme", "class:batch"]

Record = dict[str, Any]


def words_text(draw: st.DrawFn) -> str | None:
    picked = draw(st.lists(st.sampled_from(WORDS), max_size=4))
    return " ".join(picked) + "." if picked else draw(st.sampled_from([None, ""]))


@st.composite
def request_records(draw: st.DrawFn) -> Record:
    chain = draw(st.sampled_from(CHAINS))
    status = draw(st.sampled_from(STATUSES))
    usage = draw(
        st.one_of(
            st.none(),
            st.tuples(st.integers(0, 500), st.integers(0, 500)).map(
                lambda t: {"prompt_tokens": t[0], "completion_tokens": t[1], "total_tokens": sum(t)}
            ),
        )
    )
    has_content = draw(st.booleans())
    return {
        "kind": "request",
        # Whole or quarter seconds, some equal: ties exercise the keyset order.
        "time": draw(st.integers(1_000, 1_000 + 4 * 600)) / 4,
        "request_id": f"req-{draw(st.integers(0, 10**6))}",
        "trace_id": draw(st.sampled_from([None, "t1", "t2"])),
        "tenant": chain[-1],
        "tenants": chain,
        "key": draw(st.sampled_from([None, "k1", "k2", "k3"])),
        "endpoint": draw(st.sampled_from(["chat", "responses", "embeddings"])),
        "model": draw(st.sampled_from([None, "gpt", "claude"])),
        "deployment": draw(st.sampled_from([None, "d1", "d2", "d3"])),
        "route": [],
        "status": status,
        "error": None if status < 400 else draw(st.sampled_from(["rate_limited", "upstream"])),
        "usage": usage,
        # Multiples of 1/1024: sums are exact in any order.
        "cost": draw(st.one_of(st.none(), st.integers(0, 2000).map(lambda n: n / 1024))),
        "latency_ms": draw(st.integers(1, 400)) / 2,
        "ttft_ms": draw(st.one_of(st.none(), st.integers(1, 100).map(float))),
        "stream": draw(st.booleans()),
        "cut": False,
        "config_version": draw(st.sampled_from(["v1", "v2"])),
        "policy": draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "version": st.sampled_from(["p1", "p2"]),
                        "matched": st.lists(st.sampled_from(RULES), max_size=3),
                        "flags": st.lists(st.sampled_from(FLAGS), max_size=2),
                        "denied": st.none(),
                        "errors": st.just([]),
                    }
                ),
            )
        ),
        "limits": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "level": st.sampled_from(LEVELS),
                        "decision": st.sampled_from(["admitted", "refused"]),
                        "limit": st.none(),
                    }
                ),
                max_size=3,
            )
        ),
        "guards": [],
        "chaos": None,
        "content": (
            {"prompt": words_text(draw), "completion": words_text(draw)} if has_content else None
        ),
    }


@st.composite
def admin_records(draw: st.DrawFn) -> Record:
    chain = draw(st.sampled_from([[], *CHAINS]))
    return {
        "kind": "admin",
        "time": draw(st.integers(1_000, 1_000 + 4 * 600)) / 4,
        "request_id": None,
        "action": draw(st.sampled_from(["config.applied", "chaos.scheduled"])),
        "actor": draw(st.sampled_from([None, "k1"])),
        "scope": chain[-1] if chain else None,
        "tenants": chain,
        "target": "v2",
        "detail": {},
    }


records_lists = st.lists(
    st.one_of(request_records(), request_records(), request_records(), admin_records()),
    max_size=40,
)


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    # The gateway sets a scope for most callers: often present, beside the others.
    values: dict[str, Any] = {"scope": draw(st.one_of(st.none(), st.sampled_from(TENANTS)))}
    options: dict[str, st.SearchStrategy[Any]] = {
        "subtree": st.sampled_from(TENANTS),
        "tenant": st.sampled_from(TENANTS),
        "key": st.sampled_from(["k1", "k2"]),
        "model": st.sampled_from(["gpt", "claude"]),
        "deployment": st.sampled_from(["d1", "d2"]),
        "status": st.sampled_from(STATUSES),
        "status_class": st.sampled_from([2, 4, 5]),
        "error": st.sampled_from(["rate_limited", "upstream"]),
        "rule": st.sampled_from(RULES),
        "flag": st.sampled_from(FLAGS),
        "refused": st.sampled_from(LEVELS),
        "kind": st.sampled_from(["request", "admin"]),
        "endpoint": st.sampled_from(["chat", "embeddings"]),
        "since": st.integers(1_000, 1_600).map(float),
        "until": st.integers(1_000, 1_600).map(float),
        "text": st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(" ".join),
    }
    for name in draw(st.sets(st.sampled_from(sorted(options)), max_size=3)):
        values[name] = draw(options[name])
    return Filter(**values)


# -- the reference ---------------------------------------------------------


def chain_of(record: Record) -> list[str]:
    return record.get("tenants") or ["root"]


def leaf_of(record: Record) -> str | None:
    if record["kind"] == "request":
        return record["tenant"]
    return record["tenants"][-1] if record["tenants"] else None


def key_of(record: Record) -> str | None:
    return record["key"] if record["kind"] == "request" else record.get("actor")


def rules_of(record: Record) -> set[str]:
    return set((record.get("policy") or {}).get("matched") or [])


def flags_of(record: Record) -> set[str]:
    return set((record.get("policy") or {}).get("flags") or [])


def refused_of(record: Record) -> set[str]:
    return {v["level"] for v in record.get("limits") or [] if v["decision"] == "refused"}


def tokens(text: str | None) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", (text or "").lower()))


def matches(record: Record, f: Filter) -> bool:
    checks = [
        f.scope is None or f.scope in chain_of(record),
        f.subtree is None or f.subtree in chain_of(record),
        f.tenant is None or leaf_of(record) == f.tenant,
        f.key is None or key_of(record) == f.key,
        f.model is None or record.get("model") == f.model,
        f.deployment is None or record.get("deployment") == f.deployment,
        f.status is None or record.get("status") == f.status,
        f.status_class is None
        or (record.get("status") is not None and record["status"] // 100 == f.status_class),
        f.error is None or record.get("error") == f.error,
        f.rule is None or f.rule in rules_of(record),
        f.flag is None or f.flag in flags_of(record),
        f.refused is None or f.refused in refused_of(record),
        f.kind is None or record["kind"] == f.kind,
        f.endpoint is None or record.get("endpoint") == f.endpoint,
        f.since is None or record["time"] >= f.since,
        f.until is None or record["time"] < f.until,
    ]
    if f.text is not None:
        content = record.get("content") or {}
        have = tokens(content.get("prompt")) | tokens(content.get("completion"))
        checks.append(set(f.text.split()) <= have)
    return all(checks)


def brute_search(records: list[Record], f: Filter) -> list[tuple[str, int]]:
    found = [r for r in records if matches(r, f)]
    found.sort(key=lambda r: (r["time"], r["_stream"], r["seq"]), reverse=True)
    return [(r["_stream"], r["seq"]) for r in found]


def nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(Fraction(p, 100) * len(ordered)) - 1]


def group_values(record: Record, name: str) -> list[Any]:
    """The values a record groups under for `name` (several for many-valued ones)."""
    status = record.get("status")
    single = {
        "tenant": leaf_of(record),
        "key": key_of(record),
        "status_class": None if status is None else f"{status // 100}xx",
        "stream": record["_stream"],
        "policy_version": (record.get("policy") or {}).get("version"),
    }
    many = {"rule": rules_of(record), "flag": flags_of(record), "refused": refused_of(record)}
    if name in many:
        return sorted(many[name]) or [None]
    if name in single:
        return [single[name]]
    return [record.get(name)]


def brute_aggregate(
    records: list[Record], f: Filter, by: list[str], bucket_s: int | None
) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for record in records:
        if not matches(record, f):
            continue
        axes = [[math.floor(record["time"] / bucket_s) * bucket_s]] if bucket_s else []
        axes += [group_values(record, name) for name in by]
        for key in itertools.product(*axes):
            groups.setdefault(key, []).append(record)
    if not by and not bucket_s and not groups:
        groups[()] = []
    names = (["bucket"] if bucket_s else []) + by
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(names, key, strict=True))
        usage = [r.get("usage") or {} for r in members]
        statuses = [r["status"] for r in members if r.get("status") is not None]
        errors = sum(s >= 500 for s in statuses)
        row["count"] = len(members)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            row[name] = sum(u.get(name, 0) for u in usage)
        row["cost"] = sum(r["cost"] for r in members if r.get("cost") is not None)
        for column, prefix in (("latency_ms", "latency"), ("ttft_ms", "ttft")):
            values = [r[column] for r in members if r.get(column) is not None]
            for p in (50, 95, 99):
                row[f"{prefix}_p{p}"] = nearest_rank(values, p)
        row["errors"] = errors
        row["client_errors"] = sum(400 <= s < 500 for s in statuses)
        row["error_rate"] = errors / len(statuses) if statuses else None
        rows.append(row)
    return rows


def row_order(names: list[str]) -> Any:
    return lambda row: tuple((row[n] is not None, row[n]) for n in names)


# -- writing segments ------------------------------------------------------


def assign(records: list[Record], streams: int) -> dict[str, list[Record]]:
    """Spread records over streams, numbering each stream's records from 1."""
    by_stream: dict[str, list[Record]] = {}
    for i, record in enumerate(records):
        name = f"worker-{i % streams}"
        chain = by_stream.setdefault(name, [])
        record["_stream"] = name
        record["seq"] = len(chain) + 1
        chain.append(record)
    return by_stream


def line_of(record: Record) -> bytes:
    body = {k: v for k, v in record.items() if k not in ("seq", "kind", "_stream")}
    ordered = {"seq": record["seq"], "prev": PREV, "kind": record["kind"], **body}
    return json.dumps(ordered, separators=(",", ":")).encode() + b"\n"


def checkpoint_line(stream: str, last: int) -> bytes:
    body = {"kind": "checkpoint", "stream": stream, "first": 1, "last": last, "sig": "x"}
    return json.dumps(body).encode() + b"\n"


def write_log(log_dir: Path, by_stream: dict[str, list[Record]], per_segment: int = 7) -> None:
    for stream, chain in by_stream.items():
        directory = log_dir / stream
        directory.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(chain), per_segment):
            part = chain[start : start + per_segment]
            data = b"".join(line_of(r) for r in part)
            data += checkpoint_line(stream, part[-1]["seq"])
            (directory / f"{part[0]['seq']:012d}.jsonl").write_bytes(data)


@contextmanager
def indexed(records: list[Record], streams: int = 2) -> Iterator[AuditIndex]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_log(root / "log", assign(records, streams))
        with AuditIndex(root / "index.db", root / "log") as index:
            assert index.update() == len(records)
            yield index


def search_all(index: AuditIndex, f: Filter, limit: int) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(1000):
        page = search(index, f, limit=limit, cursor=cursor)
        assert len(page.entries) <= limit
        seen += [(e.stream, e.record["seq"]) for e in page.entries]
        cursor = page.cursor
        if cursor is None:
            return seen
        assert len(page.entries) == limit
    raise AssertionError("pagination did not end")


FAST = settings(
    max_examples=examples(40),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- properties ------------------------------------------------------------


@FAST
@given(
    records=records_lists,
    checks=st.lists(filters(), min_size=1, max_size=6),
    max_chain_ids=st.sampled_from([1, 500]),
)
def test_search_equals_a_scan(
    records: list[Record], checks: list[Filter], max_chain_ids: int
) -> None:
    """Also with subtrees selected by a subquery (more chains than `_MAX_CHAIN_IDS`)."""
    with indexed(records) as index, patch.object(audit.query, "_MAX_CHAIN_IDS", max_chain_ids):
        for f in checks:
            expected = brute_search(records, f)
            page = search(index, f, limit=1000)
            assert [(e.stream, e.record["seq"]) for e in page.entries] == expected
            assert page.cursor is None
            for entry in page.entries:
                assert entry.record["prev"] == PREV


@FAST
@given(
    records=records_lists,
    f=filters(),
    limit=st.integers(1, 7),
)
def test_pagination_visits_every_record_once_in_order(
    records: list[Record], f: Filter, limit: int
) -> None:
    with indexed(records, streams=3) as index:
        assert search_all(index, f, limit) == brute_search(records, f)


@FAST
@given(
    records=records_lists,
    checks=st.lists(
        st.tuples(
            filters(),
            st.lists(
                st.sampled_from(
                    [
                        *("tenant", "key", "model", "status", "status_class", "error", "kind"),
                        *("rule", "flag", "refused", "stream", "policy_version", "deployment"),
                    ]
                ),
                max_size=2,
                unique=True,
            ),
            st.sampled_from([None, 1, 30, 60, 600]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_aggregate_equals_a_scan(
    records: list[Record], checks: list[tuple[Filter, list[str], int | None]]
) -> None:
    with indexed(records) as index:
        for f, by, bucket_s in checks:
            names = (["bucket"] if bucket_s else []) + by
            got = aggregate(index, f, by, bucket_s)
            expected = brute_aggregate(records, f, by, bucket_s)
            assert got == sorted(got, key=row_order(names)), "rows in group order"
            assert sorted(got, key=row_order(names)) == sorted(expected, key=row_order(names))
            for row in got:
                assert list(row) == names + list(METRICS)


@FAST
@given(
    # Sizes drawn evenly: ranks differ from rounding only past a few values.
    latencies=st.integers(0, 150).flatmap(
        lambda n: st.lists(
            st.tuples(st.sampled_from(["gpt", "claude"]), st.integers(1, 60)),
            min_size=n,
            max_size=n,
        )
    ),
    by=st.sampled_from([[], ["model"]]),
)
def test_percentiles_are_nearest_rank(latencies: list[tuple[str, int]], by: list[str]) -> None:
    records = [
        request(model=model, latency_ms=float(ms), ttft_ms=float(ms % 7) or None, time=1000.0 + i)
        for i, (model, ms) in enumerate(latencies)
    ]
    with indexed(records) as index:
        got = aggregate(index, Filter(), by)
        expected = brute_aggregate(records, Filter(), by, None)
        assert got == sorted(expected, key=row_order(by))


@FAST
@given(records=records_lists, cut=st.integers(0, 40), torn=st.integers(1, 50))
def test_incremental_updates_equal_a_rebuild(records: list[Record], cut: int, torn: int) -> None:
    """Append in two goes, the first ending in a torn line: the index sees the
    whole lines only, then the rest once completed, and equals a fresh build."""
    assign(records, 1)
    first, rest = records[:cut], records[cut:]
    with tempfile.TemporaryDirectory() as tmp:
        segment = Path(tmp) / "log" / "worker-0" / "000000000001.jsonl"
        segment.parent.mkdir(parents=True)
        data = b"".join(line_of(r) for r in records)
        boundary = sum(len(line_of(r)) for r in first)
        tail = data[boundary : boundary + torn]
        if tail.endswith(b"\n"):
            tail = tail[:-1]
        segment.write_bytes(data[:boundary] + tail)
        with AuditIndex(Path(tmp) / "index.db", Path(tmp) / "log") as index:
            assert index.update() == len(first)
            assert index.update() == 0
            segment.write_bytes(data)
            assert index.update() == len(rest)
            assert index.count() == len(records)
            assert index.skipped == 0
            every = Filter()
            incremental = search_all(index, every, 1000)
            totals = aggregate(index, every, ["model", "rule"], 60)
            assert index.rebuild() == len(records)
            assert search_all(index, every, 1000) == incremental
            assert aggregate(index, every, ["model", "rule"], 60) == totals
            assert incremental == brute_search(records, every)


# -- examples --------------------------------------------------------------


def request(**fields: Any) -> Record:
    base: Record = {
        "kind": "request",
        "time": 1_000.0,
        "request_id": "r",
        "trace_id": None,
        "tenant": "search",
        "tenants": ["root", "acme", "search"],
        "key": "k1",
        "endpoint": "chat",
        "model": "gpt",
        "deployment": "d1",
        "route": [],
        "status": 200,
        "error": None,
        "usage": None,
        "cost": None,
        "latency_ms": 10.0,
        "ttft_ms": None,
        "stream": False,
        "cut": False,
        "config_version": "v1",
        "policy": None,
        "limits": [],
        "guards": [],
        "chaos": None,
        "content": None,
    }
    base.update(fields)
    return base


def test_an_unparseable_last_line_waits_and_a_middle_one_is_skipped(tmp_path: Path) -> None:
    records = [request(time=1000.0 + i) for i in range(3)]
    assign(records, 1)
    lines = [line_of(r) for r in records]
    segment = tmp_path / "log" / "worker-0" / "000000000001.jsonl"
    segment.parent.mkdir(parents=True)
    segment.write_bytes(lines[0] + b'{"seq":2,"prev\n')
    with AuditIndex(tmp_path / "index.db", tmp_path / "log") as index:
        assert index.update() == 1
        assert index.update() == 0
        segment.write_bytes(lines[0] + lines[1])  # the writer completed it
        assert index.update() == 1
        segment.write_bytes(lines[0] + lines[1] + b"garbage\n" + lines[2])
        assert index.update() == 1
        assert index.skipped == 1
        assert index.count() == 3


def test_a_pruned_segment_makes_the_index_rebuild(tmp_path: Path) -> None:
    records = [request(time=1000.0 + i) for i in range(20)]
    by_stream = assign(records, 1)
    write_log(tmp_path / "log", by_stream, per_segment=5)
    with AuditIndex(tmp_path / "index.db", tmp_path / "log") as index:
        assert index.update() == 20
        (tmp_path / "log" / "worker-0" / "000000000001.jsonl").unlink()
        assert index.update() == 15
        assert index.count() == 15


@pytest.mark.parametrize("max_chain_ids", [1, 500])
def test_a_sibling_tenants_records_never_appear(max_chain_ids: int) -> None:
    records = [
        request(tenant="search", tenants=["root", "acme", "search"], time=1000.0),
        request(tenant="ads", tenants=["root", "acme", "ads"], time=1001.0),
        request(tenant="acme", tenants=["root", "acme"], time=1002.0),
        request(tenant="labs", tenants=["root", "beta", "labs"], time=1003.0),
        # a tenant whose id contains another's must not match it
        request(tenant="acme2", tenants=["root", "acme2"], time=1004.0),
        {"kind": "admin", "time": 1005.0, "request_id": None, "action": "config.applied"}
        | {"actor": None, "scope": None, "tenants": [], "target": "v2", "detail": {}},
    ]
    with indexed(records) as index, patch.object(audit.query, "_MAX_CHAIN_IDS", max_chain_ids):

        def tenants(f: Filter) -> set[str | None]:
            page = search(index, f, limit=100)
            return {e.record.get("tenant", e.record.get("scope")) for e in page.entries}

        assert tenants(Filter(scope="search")) == {"search"}
        assert tenants(Filter(scope="acme")) == {"search", "ads", "acme"}
        assert tenants(Filter(scope="acme", subtree="beta")) == set()
        assert tenants(Filter(scope="acme", subtree="ads")) == {"ads"}
        assert tenants(Filter(scope="root", subtree="acme")) == {"search", "ads", "acme"}
        assert tenants(Filter(scope="acme", subtree="root")) == {"search", "ads", "acme"}
        assert tenants(Filter(scope="root")) == {"search", "ads", "acme", "labs", "acme2", None}
        rows = aggregate(index, Filter(scope="acme"), ["tenant"])
        assert {row["tenant"]: row["count"] for row in rows} == {"acme": 1, "ads": 1, "search": 1}


def test_text_search_finds_content_words() -> None:
    records = [
        request(content={"prompt": "What is the capital of France?", "completion": "Paris."}),
        request(content={"prompt": "Tell me about Berlin", "completion": None}, time=1001.0),
        request(content=None, time=1002.0),
    ]
    with indexed(records) as index:

        def found(text: str) -> int:
            return len(search(index, parse_filter({"text": text})).entries)

        assert found("paris") == 1
        assert found("capital FRANCE") == 1
        assert found("capital berlin") == 0
        assert found("berlin") == 1
        # FTS5's syntax is not interpreted: `OR` is a word to find, `*`, `"` and `:`
        # are punctuation.
        assert found('"berlin" OR paris') == 0
        assert found("berlin* prompt:") == 0
        assert found("berlin*") == 1
        assert found("rome") == 0


def test_parse_filter_reads_every_parameter() -> None:
    now = 1_800_000_000.0
    f = parse_filter(
        {
            "subtree": "acme",
            "tenant": "search",
            "key": "k1",
            "model": "gpt",
            "deployment": "d1",
            "status": "5xx",
            "error": "upstream",
            "rule": "r1",
            "flag": "pii",
            "refused": "tenant:acme",
            "kind": "request",
            "endpoint": "chat",
            "request_id": "req-1",
            "trace_id": "t1",
            "since": "15m",
            "until": "2027-01-15T08:00:00Z",
            "text": "hello",
        },
        now=now,
    )
    assert f.status_class == 5 and f.status is None
    assert f.since == now - 900
    assert f.until == datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse_filter({"status": "503", "since": "1700000000.5"}).status == 503
    assert parse_filter({"since": "2h"}, now=now).since == now - 7200
    assert parse_filter({"since": "7d"}, now=now).since == now - 7 * 86400
    naive = parse_filter({"since": "2026-12-07T04:00:00"}).since
    assert naive == datetime(2026, 12, 7, 4, tzinfo=UTC).timestamp()
    query = parse_query({"by": "model,rule", "bucket": "1m", "limit": "50", "model": "gpt"})
    assert (query.by, query.bucket_s, query.limit, query.aggregating) == (
        ["model", "rule"],
        60,
        50,
        True,
    )
    assert query.filter == Filter(model="gpt")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"modle": "gpt"}, "unknown parameter 'modle'"),
        ({"status": "5x"}, "status: '5x'"),
        ({"status": "700"}, "status: '700'"),
        ({"status": "²"}, "status: '²'"),
        ({"since": "yesterday"}, "since: 'yesterday' is not a time"),
        ({"until": "15 minutes"}, "until: '15 minutes' is not a time"),
        ({"since": "2h", "until": "3h"}, "since: must be before until"),
        ({"kind": "checkpoint"}, "kind: 'checkpoint' is not one of"),
        ({"tenant": " "}, "tenant: empty value"),
        ({"text": "!!"}, "text: no words"),
    ],
)
def test_parse_filter_names_the_bad_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_filter(params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "ten"}, "limit: 'ten' is not a number"),
        ({"limit": "5000"}, "limit: must be 1 to 1000"),
        ({"limit": "0"}, "limit: must be 1 to 1000"),
        ({"bucket": "0.5s"}, "bucket: '0.5s' must be a whole number"),
        ({"bucket": "soon"}, "bucket: 'soon' is not a duration"),
        ({"by": "model,colour"}, "by: 'colour' is not one of"),
        ({"metrics": "count,p42"}, "metrics: 'p42' is not one of"),
        ({"cursor": "nonsense!"}, "cursor: not a cursor"),
        ({"format": "json"}, "unknown parameter 'format'"),
    ],
)
def test_parse_query_names_the_bad_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_query(params)


def test_aggregation_refuses_too_many_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.query, "MAX_GROUPS", 3)
    records = [request(time=1000.0 + 60 * i) for i in range(5)]
    with indexed(records) as index:
        assert len(aggregate(index, Filter(), [], 120, ["count"])) == 3
        with pytest.raises(QueryError, match="more than 3 groups"):
            aggregate(index, Filter(), [], 60, ["count"])


def test_output_is_a_table_and_json() -> None:
    records = [
        request(time=1_800_000_000.0 + i, model=model, latency_ms=10.0 * (i + 1))
        for i, model in enumerate(["gpt", "gpt", "claude"])
    ]
    with indexed(records) as index:
        rows = aggregate(index, Filter(), ["model"], 60, ["count", "latency_p50"])
        assert rows == [
            {"bucket": 1_800_000_000, "model": "claude", "count": 1, "latency_p50": 30.0},
            {"bucket": 1_800_000_000, "model": "gpt", "count": 2, "latency_p50": 10.0},
        ]
        table = render_table(rows).splitlines()
        assert table[0].split() == ["bucket", "model", "count", "latency_p50"]
        assert table[2].split() == ["2027-01-15T08:00:00Z", "claude", "1", "30"]
        page = search(index, Filter(), limit=2)
        assert json.loads(json.dumps(page.to_json()))["records"][0]["record"]["seq"] == 2
        assert page.cursor is not None
        following = parse_query({"cursor": page.cursor, "limit": "2"})
        rest = search(index, following.filter, following.limit, following.cursor)
        assert [e.record["time"] for e in rest.entries] == [1_800_000_000.0]
        assert (
            render_table([summarize(e) for e in rest.entries])
            .splitlines()[2]
            .startswith("2027-01-15T08:00:00Z  worker-0  1")
        )
    assert render_table([]) == "(no rows)\n"


def test_an_empty_or_outdated_index(tmp_path: Path) -> None:
    with AuditIndex(tmp_path / "index.db", tmp_path / "missing") as index:
        assert index.update() == 0
        assert search(index, Filter()).entries == []
        (row,) = aggregate(index, Filter(), [], None, ["count", "latency_p50", "error_rate"])
        assert row == {"count": 0, "latency_p50": None, "error_rate": None}
    records = [request(time=1000.0 + i) for i in range(4)]
    write_log(tmp_path / "log", assign(records, 2))
    with AuditIndex(tmp_path / "index.db", tmp_path / "log") as index:
        assert index.update() == 4
        index.connection.execute("PRAGMA user_version = 0")  # another schema version
        assert index.count() == 0
        assert index.update() == 4
        with AuditIndex(tmp_path / "index.db", tmp_path / "log") as reader:
            assert len(search(reader, Filter()).entries) == 4
