"""Queries over the audit index: which records, and what they add up to.

Shared by `seawall audit query` and `GET /admin/audit`, so both accept the same
parameters with the same meaning and the same errors:

- `parse_filter(params)` / `parse_query(params)`: text parameters to a `Filter`
  (and a page or an aggregation), or a `QueryError` naming the bad parameter;
- `search(index, filter, limit, cursor)`: matching records newest first, a page at
  a time; the cursor is a keyset position (time, stream, seq), so a page costs the
  same at the millionth record as at the first, and records appended meanwhile never
  shift a page (as OFFSET would);
- `aggregate(index, filter, by, bucket_s, metrics)`: counts, sums, exact
  percentiles, error shares per group;
- `render_table(rows)`: rows as an aligned text table; rows and `Page.to_json()`
  are JSON-ready as they are.

What the fields mean for each kind of record (the index's columns, audit/index.py):
`tenant` is a request's leaf tenant, or the last tenant of an admin record's chain
(its scope); `key` is a request's key id, or an admin record's `actor`. A record's
*chain* is its `tenants`; an empty chain (the gateway's own admin actions,
tombstones) belongs to the root, so only a root-scoped reader sees those records.

The caller's scope is a separate field (`Filter.scope`, never read from the
parameters) so that a caller's own `subtree=` narrows within the scope instead of
replacing it: both must hold.

Every filter value is bound as an SQL parameter; only column names and numbers this
module chose are ever formatted into SQL.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time as clock
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from audit.index import AuditIndex
from audit.params import (
    DEFAULT_LIMIT,
    FILTER_PARAMS,
    MAX_LIMIT,
    QUERY_PARAMS,
    TEXT_PARAMS,
)
from audit.record import RECORD_KINDS

#: Page size: the default and the most a page may hold.

#: The most groups one aggregation may return: past it the query is refused (narrow
#: the filter, coarsen the bucket or group by fewer fields), never truncated. Enough
#: for a day of 1-minute buckets of 30 models (43,200); a row is ~1 KB in Python.
MAX_GROUPS = 50_000

Row = dict[str, Any]


class QueryError(ValueError):
    """A query that cannot run as asked; the message names the bad parameter."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which records: every field set must hold (`None`: any)."""

    #: The caller's scope: the record's chain contains this tenant. Set by the
    #: gateway from the caller's role, never from the parameters.
    scope: str | None = None
    #: The record's chain contains this tenant (its subtree).
    subtree: str | None = None
    #: The leaf tenant, exactly.
    tenant: str | None = None
    key: str | None = None
    model: str | None = None
    deployment: str | None = None
    #: An exact status, or a class: 5 for 5xx (500-599).
    status: int | None = None
    status_class: int | None = None
    #: The error code the client was given.
    error: str | None = None
    #: A policy rule that matched.
    rule: str | None = None
    #: A flag a rule raised.
    flag: str | None = None
    #: A limit level that refused the request (`tenant:acme`, `key:k1`, `class:batch`).
    refused: str | None = None
    kind: str | None = None
    endpoint: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    #: Unix seconds: since <= time < until.
    since: float | None = None
    until: float | None = None
    #: Words that must all appear in the opted-in content (prompt or completion).
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One record found: the stream it is in, and the record as written."""

    stream: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "record": self.record}


@dataclass(frozen=True, slots=True)
class Page:
    """Records newest first; `cursor` fetches the next page, `None` after the last."""

    entries: list[Entry]
    cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"records": [entry.to_json() for entry in self.entries], "cursor": self.cursor}


@dataclass(frozen=True, slots=True)
class Query:
    """Everything `parse_query` read: the filter, a page, an aggregation."""

    filter: Filter
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    #: Aggregate when `by` or `bucket_s` is set; search otherwise.
    by: list[str] = field(default_factory=list)
    bucket_s: int | None = None
    metrics: list[str] | None = None

    @property
    def aggregating(self) -> bool:
        return bool(self.by) or self.bucket_s is not None


# -- parsing ---------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STATUS_CLASS = re.compile(r"([1-5])xx")


def parse_filter(params: Mapping[str, str], *, now: float | None = None) -> Filter:
    """A `Filter` from text parameters (`FILTER_PARAMS`). Times (`since`, `until`)
    are unix seconds, ISO-8601 (`2026-12-07T04:00:00Z`; no zone: UTC) or a duration
    before `now` (`90s`, `15m`, `2h`, `7d`, `1w`)."""
    unknown = sorted(set(params) - set(FILTER_PARAMS))
    if unknown:
        raise QueryError(
            f"unknown parameter {unknown[0]!r}; filters are: {', '.join(FILTER_PARAMS)}"
        )
    values: dict[str, Any] = {}
    for name in TEXT_PARAMS:
        if name in params:
            values[name] = _text(name, params[name])
    if "status" in params:
        raw = params["status"].strip().lower()
        if match := _STATUS_CLASS.fullmatch(raw):
            values["status_class"] = int(match.group(1))
        elif raw.isascii() and raw.isdigit() and 100 <= int(raw) <= 599:
            values["status"] = int(raw)
        else:
            raise QueryError(
                f"status: {params['status']!r} is neither a status (100-599) nor a class (4xx)"
            )
    if "kind" in params:
        kind = params["kind"].strip()
        if kind not in RECORD_KINDS:
            raise QueryError(f"kind: {kind!r} is not one of {', '.join(RECORD_KINDS)}")
        values["kind"] = kind
    at = clock.time() if now is None else now
    for name in ("since", "until"):
        if name in params:
            values[name] = parse_time(name, params[name], at)
    if "since" in values and "until" in values and values["since"] >= values["until"]:
        raise QueryError("since: must be before until")
    if "text" in values and not _words(values["text"]):
        raise QueryError("text: no words to search for")
    return Filter(**values)


def parse_query(params: Mapping[str, str], *, now: float | None = None) -> Query:
    """A `Query` from text parameters: the filter's (`FILTER_PARAMS`) and `limit`,
    `cursor`, `by` (comma-separated `GROUP_FIELDS`), `bucket` (a duration: `1m`, or
    seconds) and `metrics` (comma-separated `METRICS`)."""
    rest = {name: value for name, value in params.items() if name not in QUERY_PARAMS}
    try:
        filter_ = parse_filter(rest, now=now)
    except QueryError as error:
        if str(error).startswith("unknown parameter"):
            raise QueryError(f"{error}; and {', '.join(QUERY_PARAMS)}") from None
        raise
    limit = DEFAULT_LIMIT
    if "limit" in params:
        raw = params["limit"].strip()
        if not (raw.isascii() and raw.isdigit()):
            raise QueryError(f"limit: {params['limit']!r} is not a number")
        limit = _check_limit(int(raw))
    cursor = None
    if "cursor" in params:
        cursor = params["cursor"].strip()
        _decode_cursor(cursor)
    by = _names("by", params.get("by"), GROUP_FIELDS)
    metrics = _names("metrics", params.get("metrics"), METRICS) if "metrics" in params else None
    bucket_s = None
    if "bucket" in params:
        bucket_s = parse_bucket(params["bucket"])
    return Query(filter_, limit, cursor, by, bucket_s, metrics)


def parse_duration(name: str, value: str) -> float:
    """Seconds from `90s`, `15m`, `2h`, `7d`, `1w`, or a plain number of seconds."""
    raw = value.strip().lower()
    if match := _DURATION.fullmatch(raw):
        return float(match.group(1)) * _UNITS[match.group(2)]
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise QueryError(f"{name}: {value!r} is not a duration (90s, 15m, 2h, 7d, 1w)")
    return seconds


def parse_bucket(value: str) -> int:
    """A time bucket's width: a duration of a whole number of seconds, at least 1."""
    seconds = parse_duration("bucket", value)
    if seconds < 1 or seconds != int(seconds):
        raise QueryError(f"bucket: {value!r} must be a whole number of seconds, at least 1")
    return int(seconds)


def parse_time(name: str, value: str, now: float) -> float:
    """Unix seconds from unix seconds, ISO-8601 (no zone: UTC) or a duration ago."""
    raw = value.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        raise QueryError(f"{name}: {value!r} is not a time")
    if match := _DURATION.fullmatch(raw.lower()):
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(
            f"{name}: {value!r} is not a time: use unix seconds, ISO-8601 "
            "(2026-12-07T04:00:00Z) or a duration ago (15m, 2h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _text(name: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise QueryError(f"{name}: empty value")
    return stripped


def _names(name: str, value: str | None, allowed: Collection[str]) -> list[str]:
    if value is None:
        return []
    names = [part.strip() for part in value.split(",") if part.strip()]
    for item in names:
        if item not in allowed:
            raise QueryError(f"{name}: {item!r} is not one of {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise QueryError(f"{name}: a name is repeated")
    return names


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: must be 1 to {MAX_LIMIT}, not {limit}")
    return limit


def _words(text: str) -> list[str]:
    """The words of a text search, as FTS5's unicode61 tokenizer splits text:
    runs of letters and digits (underscore and punctuation separate)."""
    return re.findall(r"[^\W_]+", text)


# -- the WHERE clause ------------------------------------------------------

_EXACT = (
    "tenant",
    "key",
    "model",
    "deployment",
    "status",
    "error",
    "kind",
    "endpoint",
    "request_id",
    "trace_id",
)


#: The most chain ids written into a query; a subtree of more chains is selected by
#: a subquery on `chains` instead.
_MAX_CHAIN_IDS = 500


def _where(
    index: AuditIndex, filter_: Filter, *, newest: int | None = None
) -> tuple[str, list[Any]]:
    """The conditions on `records r` a filter means, and their parameters. `newest`:
    the query wants only the newest `newest` records (a page), which decides how the
    subtree is best found (`_subtree`)."""
    conditions: list[str] = []
    params: list[Any] = []
    subtree = _subtree(index, filter_, newest)
    if subtree is not None:
        conditions.append(subtree[0])
        params += subtree[1]
    for name in _EXACT:
        value = getattr(filter_, name)
        if value is not None:
            conditions.append(f"r.{name} = ?")
            params.append(value)
    if filter_.status_class is not None:
        conditions.append("r.status >= ? AND r.status < ?")
        params += [filter_.status_class * 100, filter_.status_class * 100 + 100]
    if filter_.rule is not None:
        conditions.append("r.rid IN (SELECT rid FROM record_rules WHERE rule = ?)")
        params.append(filter_.rule)
    if filter_.flag is not None:
        conditions.append("r.rid IN (SELECT rid FROM record_flags WHERE flag = ?)")
        params.append(filter_.flag)
    if filter_.refused is not None:
        conditions.append(
            "r.rid IN (SELECT rid FROM record_limits WHERE decision = 'refused' AND level = ?)"
        )
        params.append(filter_.refused)
    if filter_.since is not None:
        conditions.append("r.time >= ?")
        params.append(filter_.since)
    if filter_.until is not None:
        conditions.append("r.time < ?")
        params.append(filter_.until)
    if filter_.text is not None:
        if not index.fts:
            raise QueryError("text: this SQLite has no FTS5, so no text search")
        words = _words(filter_.text)
        if not words:
            raise QueryError("text: no words to search for")
        conditions.append("r.rid IN (SELECT rowid FROM content_fts WHERE content_fts MATCH ?)")
        # Each word a quoted string: FTS5's own syntax (columns, NEAR, *) is not
        # offered, so no text can make the query fail or mean something else.
        params.append(" ".join(f'"{word}"' for word in words))
    return (" AND ".join(conditions) or "1"), params


def _subtree(
    index: AuditIndex, filter_: Filter, newest: int | None
) -> tuple[str, list[Any]] | None:
    """The condition for `scope` and `subtree` (both: the chain contains both), as
    the chain ids that match, read from the small `chains` table first.

    For a page of the newest records, how to find them depends on the subtree's
    share of the records, which `chains` counts. Through `records_chain` every
    record of the subtree is read and sorted; walking `records_time` backwards
    reads about newest / share records. The walk wins when share > sqrt(newest /
    total): then the chain index is hidden from the planner (`+r.chain_id`), which
    cannot know the share and would otherwise read and sort, say, all 50,000
    records of a leaf tenant for a page of 100 (measured: 58 ms against 0.5 ms).
    """
    marks = [f"|{tenant}|" for tenant in (filter_.scope, filter_.subtree) if tenant is not None]
    if not marks:
        return None
    chains = index.connection.execute("SELECT id, path, records FROM chains").fetchall()
    ids = [chain_id for chain_id, path, _ in chains if all(mark in path for mark in marks)]
    if len(ids) == len(chains):
        return None  # every chain: the root's subtree
    if not ids:
        return "0", []
    if len(ids) > _MAX_CHAIN_IDS:
        return " AND ".join(
            "r.chain_id IN (SELECT id FROM chains WHERE instr(path, ?) > 0)" for _ in marks
        ), marks
    chosen = set(ids)
    total = sum(count for _, _, count in chains)
    matched = sum(count for chain_id, _, count in chains if chain_id in chosen)
    walk = newest is not None and matched * matched > newest * total
    column = "+r.chain_id" if walk else "r.chain_id"
    return f"{column} IN ({', '.join('?' for _ in ids)})", ids


# -- search ----------------------------------------------------------------


def search(
    index: AuditIndex,
    filter_: Filter,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """The records matching `filter_`, newest first (time, then stream, then seq,
    all descending), `limit` at a time; pass the page's cursor for the next. Reads
    the index as it is: call `index.update()` first for what was just written."""
    _check_limit(limit)
    where, params = _where(index, filter_, newest=limit + 1)
    if cursor is not None:
        where += " AND (r.time, r.stream, r.seq) < (?, ?, ?)"
        params += _decode_cursor(cursor)
    rows = index.connection.execute(
        f"SELECT r.time, r.stream, r.seq, r.rid FROM records r WHERE {where} "
        "ORDER BY r.time DESC, r.stream DESC, r.seq DESC LIMIT ?",
        [*params, limit + 1],
    ).fetchall()
    lines = _lines(index, [row[3] for row in rows[:limit]])
    entries = [Entry(stream, orjson.loads(lines[rid])) for _, stream, _, rid in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        time, stream, seq, _ = rows[limit - 1]
        next_cursor = _encode_cursor(time, stream, seq)
    return Page(entries, next_cursor)


def _lines(index: AuditIndex, rids: list[int]) -> dict[int, str]:
    """The lines of these records, by rid (one query: a page is at most 1,000)."""
    if not rids:
        return {}
    marks = ", ".join("?" for _ in rids)
    found = index.connection.execute(f"SELECT rid, json FROM lines WHERE rid IN ({marks})", rids)
    return dict(found.fetchall())


def _encode_cursor(time: float, stream: str, seq: int) -> str:
    """Opaque to callers: the last record's position, URL-safe."""
    return base64.urlsafe_b64encode(orjson.dumps([time, stream, seq])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise QueryError("cursor: not a cursor this query returned") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], int | float)
        or not isinstance(value[1], str)
        or not isinstance(value[2], int)
    ):
        raise QueryError("cursor: not a cursor this query returned")
    return [float(value[0]), value[1], value[2]]


# -- aggregation -----------------------------------------------------------

#: What `by` may name, and the SQL for each. `rule`, `flag` and `refused` are
#: many-valued: a record counts once in each of its values' groups (and in the
#: `null` group when it has none). `status_class` is `2xx`, `4xx`, `5xx`...
GROUP_FIELDS: dict[str, str] = {
    "tenant": "r.tenant",
    "key": "r.key",
    "model": "r.model",
    "deployment": "r.deployment",
    "status": "r.status",
    "status_class": "CASE WHEN r.status IS NULL THEN NULL ELSE (r.status / 100) || 'xx' END",
    "error": "r.error",
    "endpoint": "r.endpoint",
    "kind": "r.kind",
    "action": "r.action",
    "stream": "r.stream",
    "config_version": "r.config_version",
    "policy_version": "r.policy_version",
    "rule": "g_rule.rule",
    "flag": "g_flag.flag",
    "refused": "g_refused.level",
}
_JOINS = {
    "rule": "LEFT JOIN record_rules g_rule ON g_rule.rid = r.rid",
    "flag": "LEFT JOIN record_flags g_flag ON g_flag.rid = r.rid",
    "refused": "LEFT JOIN record_limits g_refused "
    "ON g_refused.rid = r.rid AND g_refused.decision = 'refused'",
}

#: The percentiles computed, nearest-rank: the p-th percentile of n values is the
#: value at rank ceil(p/100 * n) (1-based) in ascending order; exact, always one of
#: the values; null when there are none. Over records with the field set only.
PERCENTILES = (50, 95, 99)

#: What `aggregate` can compute per group:
#: - `count`: records;
#: - `prompt_tokens`, `completion_tokens`, `total_tokens`: sums (no usage: 0);
#: - `cost`: the sum of the known costs (an unpriced record adds nothing);
#: - `latency_p50`... `ttft_p99`: percentiles as `PERCENTILES` says;
#: - `errors`: records with status >= 500 (the gateway or the upstream failed);
#: - `client_errors`: status 400-499 (refused: auth, limits, policy, bad request);
#: - `error_rate`: errors / records with a status (admin records have none); null
#:   when no record has one.
METRICS = (
    "count",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    *(f"latency_p{p}" for p in PERCENTILES),
    *(f"ttft_p{p}" for p in PERCENTILES),
    "errors",
    "client_errors",
    "error_rate",
)
_SUMS = {
    "count": "COUNT(*)",
    "prompt_tokens": "COALESCE(SUM(r.prompt_tokens), 0)",
    "completion_tokens": "COALESCE(SUM(r.completion_tokens), 0)",
    "total_tokens": "COALESCE(SUM(r.total_tokens), 0)",
    "cost": "TOTAL(r.cost)",
    "errors": "COALESCE(SUM(r.status >= 500), 0)",
    "client_errors": "COALESCE(SUM(r.status >= 400 AND r.status < 500), 0)",
    "statuses": "COUNT(r.status)",
}


def aggregate(
    index: AuditIndex,
    filter_: Filter,
    by: Sequence[str] = (),
    bucket_s: int | None = None,
    metrics: Sequence[str] | None = None,
) -> list[Row]:
    """The matching records grouped by a time bucket (`bucket`: the bucket's start,
    floor(time / bucket_s) * bucket_s, unix seconds) and the `by` fields, with
    `metrics` (all of `METRICS` by default) per group. Rows are ordered by bucket,
    then the fields in order (null first). Without a bucket or fields there is one
    row, even over no records. More than `MAX_GROUPS` groups is a `QueryError`."""
    for name in by:
        if name not in GROUP_FIELDS:
            raise QueryError(f"by: {name!r} is not one of {', '.join(GROUP_FIELDS)}")
    if len(set(by)) != len(by):
        raise QueryError("by: a field is repeated")
    if bucket_s is not None and (not isinstance(bucket_s, int) or bucket_s < 1):
        raise QueryError("bucket: must be a whole number of seconds, at least 1")
    wanted = list(METRICS if metrics is None else metrics)
    for name in wanted:
        if name not in METRICS:
            raise QueryError(f"metrics: {name!r} is not one of {', '.join(METRICS)}")

    names: list[str] = []
    expressions: list[str] = []
    if bucket_s is not None:
        names.append("bucket")
        expressions.append(f"CAST(r.time / {bucket_s} AS INTEGER) * {bucket_s}")
    names += by
    expressions += [GROUP_FIELDS[name] for name in by]
    joins = " ".join(_JOINS[name] for name in by if name in _JOINS)
    where, params = _where(index, filter_)
    source = f"FROM records r {joins} WHERE {where}"
    keys = [f"g{i}" for i in range(len(names))]
    selected = [f"{expression} AS {key}" for expression, key in zip(expressions, keys, strict=True)]
    group = f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""

    sums = list(_SUMS)
    rows = index.connection.execute(
        f"SELECT {', '.join([*selected, *(_SUMS[name] for name in sums)])} {source} "
        f"{group} LIMIT {MAX_GROUPS + 1}",
        params,
    ).fetchall()
    if len(rows) > MAX_GROUPS:
        raise QueryError(
            f"by: more than {MAX_GROUPS} groups; narrow the filter, widen the bucket "
            "or group by fewer fields"
        )
    width = len(keys)
    results: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        group_key = tuple(row[:width])
        values = dict(zip(sums, row[width:], strict=True))
        out: Row = dict(zip(names, group_key, strict=True))
        for name in wanted:
            if name in _SUMS:
                out[name] = values[name]
            elif name == "error_rate":
                statuses = values["statuses"]
                out[name] = values["errors"] / statuses if statuses else None
            else:
                out[name] = None
        results[group_key] = out

    spread = {
        column: [p for p in PERCENTILES if f"{prefix}_p{p}" in wanted]
        for column, prefix in _SPREAD.items()
    }
    spread = {column: asked for column, asked in spread.items() if asked}
    if spread:
        groups = _values(index, expressions, source, params, list(spread))
        for group_key, lists in groups.items():
            row = results[group_key]
            for (column, asked), found in zip(spread.items(), lists, strict=True):
                found.sort()
                for p in asked:
                    row[f"{_SPREAD[column]}_p{p}"] = nearest_rank(found, p)
    return list(results.values())


#: The columns with percentiles, and their metrics' prefix.
_SPREAD = {"latency_ms": "latency", "ttft_ms": "ttft"}


def nearest_rank(ordered: Sequence[float], p: int) -> float | None:
    """The p-th percentile of values in ascending order: the value at rank
    ceil(p * n / 100), 1-based (computed in integers); None for no values."""
    n = len(ordered)
    return ordered[(n * p + 99) // 100 - 1] if n else None


def _values(
    index: AuditIndex,
    expressions: list[str],
    source: str,
    params: list[Any],
    columns: list[str],
) -> dict[tuple[Any, ...], list[list[float]]]:
    """Each group's non-null values of `columns`, in one pass over the records.

    Sorted in Python, not ranked in SQL: a window function (ROW_NUMBER over each
    group) took ~300-600 ms for a day of a million records (143k), fetching and
    sorting here ~170 ms. Memory is one float per record and column matched."""
    width = len(expressions)
    selected = [*expressions, *(f"r.{column}" for column in columns)]
    present = " OR ".join(f"r.{column} IS NOT NULL" for column in columns)
    groups: dict[tuple[Any, ...], list[list[float]]] = {}
    sql = f"SELECT {', '.join(selected)} {source} AND ({present})"
    for row in index.connection.execute(sql, params):
        key = tuple(row[:width])
        lists = groups.get(key)
        if lists is None:
            lists = groups[key] = [[] for _ in columns]
        for found, value in zip(lists, row[width:], strict=True):
            if value is not None:
                found.append(value)
    return groups


# -- output ----------------------------------------------------------------

#: Columns rendered as UTC times.
_TIME_COLUMNS = ("bucket", "time")


def summarize(entry: Entry) -> Row:
    """The columns of one record worth a table row."""
    record = entry.record
    return {
        "time": record.get("time"),
        "stream": entry.stream,
        "seq": record.get("seq"),
        "kind": record.get("kind"),
        "tenant": record.get("tenant"),
        "key": record.get("key", record.get("actor")),
        "model": record.get("model"),
        "status": record.get("status", record.get("action")),
        "error": record.get("error"),
        "latency_ms": record.get("latency_ms"),
        "request_id": record.get("request_id"),
    }


def render_table(rows: Sequence[Row]) -> str:
    """Rows as an aligned text table (columns of the first row); times as UTC. Ends
    with a newline."""
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    cells = [[_cell(column, row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(columns).rstrip(), rule, *(line(row).rstrip() for row in cells), ""])


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in _TIME_COLUMNS and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
