"""The audit log's index: an SQLite database built from the segment files.

The segments are the source of truth (audit/__init__.py); the index is a cache of
them that queries can use, and can always be thrown away and rebuilt. It is built
incrementally: for every segment file it remembers how many bytes it has indexed,
so `update()` reads only what was appended since, and only whole lines. A torn last
line (bytes after the last newline: the writer is mid-write, or was killed) or an
unparseable last line is not indexed and not counted as read, so the next `update()`
picks it up once the writer has completed it. An unparseable line with good lines
after it cannot be completed any more: it is skipped (and counted), the verifier's
business, not the index's.

If a segment the index has read shrinks or disappears (pruning behind a tombstone,
a restored backup), the index no longer describes the files: `update()` rebuilds.

Why SQLite: it is embedded (no server to run beside the gateway), WAL mode lets
queries read while `update()` writes, and one file holds millions of records with
B-tree indexes on the fields audits filter by. For many replicas it still works per
replica (each indexes its own log directory); a fleet-wide view ships the segments to
object storage and indexes them with a columnar engine (DuckDB over Parquet,
ClickHouse), which reads the same files this module reads.

Schema (`SCHEMA_VERSION`; a database of another version is rebuilt):

- `records`: one row per record with a column for every field queries filter or
  group by (`stream` is the audit stream's name; the record's own `stream` boolean
  is `is_stream`);
- `lines`: each record's line as written (`json`), by `rid`: apart from `records`
  so that the scans of aggregates read ~300 bytes a record, not ~1.3 KB (measured
  over a million records: every metric by tenant over a day went from 1.1 s to
  0.7 s);
- `chains`: the distinct tenant chains as `|root|team|proj|` strings, and how many
  records each has; a record points at its chain (`chain_id`). "In the subtree of
  X" is "the chain contains `|X|`": a scan of `chains` (as many rows as tenants, not
  records) gives the chain ids, and `records_chain (chain_id, time)` finds their
  records; the counts tell queries how large a share of the records that is. A
  record with an empty chain (the gateway's own admin actions, tombstones) belongs
  to the root;
- `record_rules`, `record_flags`, `record_limits`: the many-valued fields (the
  matched policy rules, the flags raised, the limit levels admitted or refused),
  distinct per record;
- `content_fts`: an FTS5 table (contentless: the text is already in `json`) over
  the opted-in `content.prompt` and `content.completion`, when this SQLite has FTS5.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from audit.record import RECORD_KINDS

#: Bumped when the tables change: a database of another version is rebuilt.
SCHEMA_VERSION = 1

#: The implicit root tenant (tenants/config.py's `ROOT`; not imported: this package
#: depends on nothing of the gateway's). Records with an empty chain belong to it.
ROOT = "root"

_SEGMENT_NAME = re.compile(r"^\d{12}\.jsonl$")

#: Bytes read from a segment at a time: bounds memory on a first build over large
#: segments without a read per line.
_CHUNK = 8 << 20

#: Rows per `executemany`.
_BATCH = 5_000

#: The `records` columns, in insert order.
COLUMNS = (
    "rid",
    "stream",
    "seq",
    "kind",
    "time",
    "request_id",
    "trace_id",
    "tenant",
    "chain_id",
    "key",
    "endpoint",
    "model",
    "deployment",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "is_stream",
    "cut",
    "config_version",
    "policy_version",
    "action",
)

_TABLES = """
CREATE TABLE segments (path TEXT PRIMARY KEY, indexed INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE chains (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, records INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE records (
    rid INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    time REAL NOT NULL,
    request_id TEXT,
    trace_id TEXT,
    tenant TEXT,
    chain_id INTEGER NOT NULL,
    key TEXT,
    endpoint TEXT,
    model TEXT,
    deployment TEXT,
    status INTEGER,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    cost REAL,
    latency_ms REAL,
    ttft_ms REAL,
    is_stream INTEGER,
    cut INTEGER,
    config_version TEXT,
    policy_version TEXT,
    action TEXT,
    UNIQUE (stream, seq)
);
CREATE TABLE lines (rid INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE record_rules (
    rule TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (rule, rid)
) WITHOUT ROWID;
CREATE TABLE record_flags (
    flag TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (flag, rid)
) WITHOUT ROWID;
CREATE TABLE record_limits (
    decision TEXT NOT NULL, level TEXT NOT NULL, rid INTEGER NOT NULL,
    PRIMARY KEY (decision, level, rid)
) WITHOUT ROWID;
"""

_FTS_TABLE = (
    "CREATE VIRTUAL TABLE content_fts USING fts5(prompt, completion, content='', "
    "tokenize='unicode61')"
)

#: Secondary indexes: created after a bulk build (cheaper than maintaining them row
#: by row), kept up to date by incremental updates. `records_time` is also the
#: keyset of pagination (newest first on time, stream, seq).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS records_time ON records (time, stream, seq)",
    "CREATE INDEX IF NOT EXISTS records_chain ON records (chain_id, time)",
    "CREATE INDEX IF NOT EXISTS records_tenant ON records (tenant, time)",
    "CREATE INDEX IF NOT EXISTS records_key ON records (key, time)",
    "CREATE INDEX IF NOT EXISTS records_model ON records (model, time)",
    "CREATE INDEX IF NOT EXISTS records_status ON records (status, time)",
    "CREATE INDEX IF NOT EXISTS records_request ON records (request_id)",
    "CREATE INDEX IF NOT EXISTS record_rules_rid ON record_rules (rid)",
    "CREATE INDEX IF NOT EXISTS record_flags_rid ON record_flags (rid)",
    "CREATE INDEX IF NOT EXISTS record_limits_rid ON record_limits (rid)",
)
_INDEX_NAMES = tuple(statement.split()[5] for statement in _INDEXES)

_CHAIN_COLUMN = COLUMNS.index("chain_id")

_INSERT_RECORD = (
    f"INSERT OR IGNORE INTO records ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def has_fts5() -> bool:
    """Whether this Python's SQLite was built with FTS5 (text search needs it)."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


def chain_path(tenants: list[str]) -> str:
    """A tenant chain as the `|root|team|proj|` string `chains` stores; an empty
    chain is the root's. The bars make `|X|` match a whole tenant id only."""
    return "|" + "|".join(tenants or [ROOT]) + "|"


@dataclass(slots=True)
class _Batch:
    """Rows collected for one `executemany` per table."""

    records: list[tuple[Any, ...]]
    lines: list[tuple[int, str]]
    rules: list[tuple[str, int]]
    flags: list[tuple[str, int]]
    limits: list[tuple[str, str, int]]
    content: list[tuple[int, str | None, str | None]]

    @classmethod
    def empty(cls) -> _Batch:
        return cls([], [], [], [], [], [])


class AuditIndex:
    """The index of one log directory in one SQLite file.

    One instance holds one connection: use one per thread. Several processes may
    open the same file: WAL lets readers run beside the writer, and `update()` takes
    the write lock before it reads what is indexed, so two updaters never index the
    same bytes twice.
    """

    def __init__(self, db_path: str | os.PathLike[str], log_dir: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self.log_dir = Path(log_dir)
        self.fts = has_fts5()
        #: Lines neither a record, a checkpoint nor a torn tail (bad JSON with lines
        #: after it, a record without `seq` or `time`, a repeated `seq`), skipped by
        #: this instance's updates.
        self.skipped = 0
        self.connection = sqlite3.connect(
            self.db_path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        self.connection.execute("PRAGMA temp_store = MEMORY")
        self.connection.execute("PRAGMA cache_size = -65536")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> AuditIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self) -> int:
        """How many records are indexed (0 before the first update)."""
        if not self._current():
            return 0
        row = self.connection.execute("SELECT COUNT(*) FROM records").fetchone()
        return int(row[0])

    def records_since(self, since: float, kind: str = "request") -> Iterator[dict[str, Any]]:
        """Every indexed record of `kind` from `since` (unix seconds) on, oldest first,
        as written (what rebuilds the SLO windows after a restart reads)."""
        if not self._current():
            return
        cursor = self.connection.execute(
            "SELECT l.json FROM records r JOIN lines l ON l.rid = r.rid "
            "WHERE r.kind = ? AND r.time >= ? ORDER BY r.time",
            (kind, since),
        )
        for (line,) in cursor:
            yield orjson.loads(line)

    def update(self) -> int:
        """Index what was appended to the segments since the last update; returns
        how many records it added. Rebuilds when the index cannot be brought up to
        date by appending (another schema, a segment shrunk or gone)."""
        with self._transaction():
            current = self._current() and not self._stale()
            if current:
                added = self._index_segments(bulk=self._empty())
        if not current:
            return self.rebuild()
        self._shrink_wal(added)
        return added

    def rebuild(self) -> int:
        """Drop everything and index every segment from the start; returns how many
        records it indexed."""
        with self._transaction():
            self._drop()
            self._create()
            added = self._index_segments(bulk=True)
        self._shrink_wal(added)
        return added

    def _shrink_wal(self, added: int) -> None:
        """After a large update, copy the WAL into the database and truncate it: a
        build writes every page to the WAL first, and the file would otherwise stay
        as large as the database. Readers still on old pages only make it partial."""
        if added > 10_000:
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- schema --------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken before anything is read: the offsets an
        update starts from are the ones no other updater can move meanwhile."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def _current(self) -> bool:
        (version,) = self.connection.execute("PRAGMA user_version").fetchone()
        return bool(version == SCHEMA_VERSION)

    def _empty(self) -> bool:
        return self.connection.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None

    def _drop(self) -> None:
        """Drop every table, whatever schema version made it: virtual tables first
        (they drop their own shadow tables), then the rest."""
        for virtual in (True, False):
            names = self.connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
                " AND (sql LIKE 'CREATE VIRTUAL%') = ?",
                (virtual,),
            ).fetchall()
            for (name,) in names:
                self.connection.execute(f'DROP TABLE IF EXISTS "{name}"')
        self.connection.execute("PRAGMA user_version = 0")

    def _create(self) -> None:
        for statement in _TABLES.split(";"):
            if statement.strip():
                self.connection.execute(statement)
        if self.fts:
            self.connection.execute(_FTS_TABLE)
        self.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _stale(self) -> bool:
        """Whether a segment already (partly) indexed shrank or disappeared."""
        for relative, indexed in self.connection.execute("SELECT path, indexed FROM segments"):
            try:
                size = (self.log_dir / relative).stat().st_size
            except FileNotFoundError:
                return True
            if size < indexed:
                return True
        return False

    # -- indexing ------------------------------------------------------------

    def _segments(self) -> list[tuple[str, str, Path]]:
        """(stream, relative path, path) of every segment, in stream then file order."""
        found: list[tuple[str, str, Path]] = []
        if not self.log_dir.is_dir():
            return found
        for stream_dir in sorted(self.log_dir.iterdir()):
            if not stream_dir.is_dir():
                continue
            for segment in sorted(stream_dir.iterdir()):
                if _SEGMENT_NAME.match(segment.name) and segment.is_file():
                    found.append((stream_dir.name, f"{stream_dir.name}/{segment.name}", segment))
        return found

    def _index_segments(self, *, bulk: bool) -> int:
        if bulk:
            for name in _INDEX_NAMES:
                self.connection.execute(f"DROP INDEX IF EXISTS {name}")
        indexed = dict(self.connection.execute("SELECT path, indexed FROM segments").fetchall())
        chains = {
            path: chain_id
            for chain_id, path in self.connection.execute("SELECT id, path FROM chains")
        }
        last_rid = self.connection.execute("SELECT MAX(rid) FROM records").fetchone()[0] or 0
        reader = _Reader(self.connection, chains, int(last_rid), self.fts)
        for stream, relative, path in self._segments():
            start = int(indexed.get(relative, 0))
            if path.stat().st_size <= start:
                continue
            end = reader.read_segment(stream, path, start)
            self.connection.execute(
                "INSERT INTO segments (path, indexed) VALUES (?, ?) "
                "ON CONFLICT (path) DO UPDATE SET indexed = excluded.indexed",
                (relative, end),
            )
        reader.flush()
        self.skipped += reader.skipped
        for statement in _INDEXES:
            self.connection.execute(statement)
        if bulk or reader.added > 10_000:
            # The planner's statistics: without them it may pick the chain index
            # and sort a million rows where walking the time index backwards wins.
            # Sampled (analysis_limit): exact counts would read every index.
            self.connection.execute("PRAGMA analysis_limit = 2000")
            self.connection.execute("ANALYZE")
        return reader.added


class _Reader:
    """Turns segment lines into rows, a batch at a time."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        chains: dict[str, int],
        last_rid: int,
        fts: bool,
    ) -> None:
        self.connection = connection
        self.chains = chains
        self.rid = last_rid
        self.fts = fts
        self.added = 0
        self.skipped = 0
        self.batch = _Batch.empty()
        #: Where the current run of bad JSON lines began, and how many it has.
        self._bad_from: int | None = None
        self._bad_count = 0

    def read_segment(self, stream: str, path: Path, start: int) -> int:
        """Index the whole lines of `path` after byte `start`; returns the offset
        after the last line consumed (a torn or unparseable tail is left for later)."""
        self._bad_from, self._bad_count = None, 0
        base = start  # the file offset of data[0]
        end = start
        with path.open("rb") as file:
            file.seek(start)
            pending = b""
            while chunk := file.read(_CHUNK):
                data = pending + chunk
                cut = data.rfind(b"\n")
                if cut < 0:
                    pending = data
                    continue
                self._lines(stream, data, cut + 1, base)
                pending = data[cut + 1 :]
                base += cut + 1
                end = base
        if self._bad_from is not None:
            return self._bad_from
        return end

    def _lines(self, stream: str, data: bytes, size: int, base: int) -> None:
        """Index the newline-terminated lines of `data[:size]`, found at file offset
        `base`. A run of bad JSON is remembered until a good line follows it (then
        it is skipped) or the segment ends (then it is retried next time)."""
        position = 0
        while position < size:
            end = data.index(b"\n", position)
            line = data[position:end]
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                if self._bad_from is None:
                    self._bad_from = base + position
                self._bad_count += 1
            else:
                if self._bad_from is not None:
                    # Bad lines followed by a good one will never be completed.
                    self.skipped += self._bad_count
                    self._bad_from, self._bad_count = None, 0
                if isinstance(value, dict):
                    self._record(stream, value, line)
            position = end + 1

    def _record(self, stream: str, record: dict[str, Any], line: bytes) -> None:
        kind = record.get("kind")
        if kind not in RECORD_KINDS:
            return  # a checkpoint, or something else that is not a record
        seq = _int(record.get("seq"))
        time = _float(record.get("time"))
        if seq is None or time is None:
            self.skipped += 1
            return
        self.rid += 1
        rid = self.rid
        tenants = [t for t in _list(record.get("tenants")) if isinstance(t, str)]
        if kind == "request":
            tenant = _str(record.get("tenant"))
            key = _str(record.get("key"))
        else:
            tenant = tenants[-1] if tenants else None
            key = _str(record.get("actor"))
        path = chain_path(tenants)
        chain_id = self.chains.get(path)
        if chain_id is None:
            cursor = self.connection.execute("INSERT INTO chains (path) VALUES (?)", (path,))
            chain_id = self.chains[path] = int(cursor.lastrowid or 0)
        usage = _dict(record.get("usage"))
        policy = _dict(record.get("policy"))
        stream_flag = record.get("stream")
        cut = record.get("cut")
        batch = self.batch
        batch.records.append(
            (
                rid,
                stream,
                seq,
                kind,
                time,
                _str(record.get("request_id")),
                _str(record.get("trace_id")),
                tenant,
                chain_id,
                key,
                _str(record.get("endpoint")),
                _str(record.get("model")),
                _str(record.get("deployment")),
                _int(record.get("status")),
                _str(record.get("error")),
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
                _int(usage.get("total_tokens")),
                _float(record.get("cost")),
                _float(record.get("latency_ms")),
                _float(record.get("ttft_ms")),
                int(stream_flag) if isinstance(stream_flag, bool) else None,
                int(cut) if isinstance(cut, bool) else None,
                _str(record.get("config_version")),
                _str(policy.get("version")),
                _str(record.get("action")),
            )
        )
        batch.lines.append((rid, line.decode("utf-8", "replace")))
        for rule in {r for r in _list(policy.get("matched")) if isinstance(r, str)}:
            batch.rules.append((rule, rid))
        for flag in {f for f in _list(policy.get("flags")) if isinstance(f, str)}:
            batch.flags.append((flag, rid))
        for verdict in _list(record.get("limits")):
            if isinstance(verdict, dict):
                level, decision = verdict.get("level"), verdict.get("decision")
                if isinstance(level, str) and isinstance(decision, str):
                    batch.limits.append((decision, level, rid))
        content = _dict(record.get("content"))
        prompt, completion = _str(content.get("prompt")), _str(content.get("completion"))
        if self.fts and (prompt or completion):
            batch.content.append((rid, prompt, completion))
        if len(batch.records) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the batch. A record whose (stream, seq) is already indexed (a
        repeated line) is ignored, and so are its side rows."""
        batch = self.batch
        if not batch.records:
            return
        self.batch = _Batch.empty()
        cursor = self.connection.executemany(_INSERT_RECORD, batch.records)
        inserted = cursor.rowcount
        if inserted != len(batch.records):
            first, last = batch.records[0][0], batch.records[-1][0]
            kept = {
                rid
                for (rid,) in self.connection.execute(
                    "SELECT rid FROM records WHERE rid BETWEEN ? AND ?", (first, last)
                )
            }
            self.skipped += len(batch.records) - len(kept)
            batch.lines = [row for row in batch.lines if row[0] in kept]
            batch.rules = [row for row in batch.rules if row[1] in kept]
            batch.flags = [row for row in batch.flags if row[1] in kept]
            batch.limits = [row for row in batch.limits if row[2] in kept]
            batch.content = [row for row in batch.content if row[0] in kept]
            batch.records = [row for row in batch.records if row[0] in kept]
            inserted = len(kept)
        self.added += inserted
        counts = Counter(row[_CHAIN_COLUMN] for row in batch.records)
        self.connection.executemany(
            "UPDATE chains SET records = records + ? WHERE id = ?",
            [(count, chain_id) for chain_id, count in counts.items()],
        )
        insert = self.connection.executemany
        insert("INSERT INTO lines (rid, json) VALUES (?, ?)", batch.lines)
        insert("INSERT OR IGNORE INTO record_rules (rule, rid) VALUES (?, ?)", batch.rules)
        insert("INSERT OR IGNORE INTO record_flags (flag, rid) VALUES (?, ?)", batch.flags)
        insert(
            "INSERT OR IGNORE INTO record_limits (decision, level, rid) VALUES (?, ?, ?)",
            batch.limits,
        )
        if batch.content:
            insert(
                "INSERT INTO content_fts (rowid, prompt, completion) VALUES (?, ?, ?)",
                batch.content,
            )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
