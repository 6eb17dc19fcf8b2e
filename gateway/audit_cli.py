"""`seawall audit ...`: keys, verification, queries and the index, offline.

Everything here works on the files alone (a copy of the log directory and the
public keys are enough to verify); no gateway needs to run. docs/audit.md shows
each command with real output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit.index import AuditIndex

#: The index next to the segments unless `--index` says otherwise.
INDEX_NAME = "index.sqlite3"


def keygen(args: argparse.Namespace) -> int:
    from audit.keys import generate_keypair

    try:
        key_id = generate_keypair(Path(args.private), Path(args.public))
    except (OSError, ValueError) as exc:
        return _fail("keygen", str(exc))
    print(f"wrote {args.private} (private, mode 0600) and {args.public}; key id {key_id}")
    return 0


def pubkey(args: argparse.Namespace) -> int:
    from audit.keys import public_key_pem

    try:
        sys.stdout.write(public_key_pem(Path(args.private).read_text()))
    except (OSError, ValueError) as exc:
        return _fail("pubkey", str(exc))
    return 0


def _fail(command: str, message: str) -> int:
    print(f"seawall audit {command}: {message}", file=sys.stderr)
    return 2


def _log_directory(args: argparse.Namespace) -> Path | None:
    directory = Path(args.directory)
    return directory if directory.is_dir() else None


def verify(args: argparse.Namespace) -> int:
    from audit.keys import KeyRing
    from audit.verify import render_report
    from audit.verify import verify as verify_log

    if _log_directory(args) is None:
        return _fail("verify", f"{args.directory}: no such log directory")
    try:
        ring = KeyRing.from_files([Path(p) for p in args.public_key])
    except (OSError, ValueError) as exc:
        return _fail("verify", f"cannot read a public key: {exc}")
    report = verify_log(Path(args.directory), ring, strict=args.strict)
    if args.json:
        print(json.dumps(report.describe(), indent=2))
    else:
        sys.stdout.write(render_report(report))
    return 0 if report.ok else 1


def _index(args: argparse.Namespace) -> AuditIndex:
    from audit.index import AuditIndex

    directory = Path(args.directory)
    return AuditIndex(Path(args.index) if args.index else directory / INDEX_NAME, directory)


def query(args: argparse.Namespace) -> int:
    from audit.query import QueryError, aggregate, parse_query, render_table, search, summarize

    params: dict[str, str] = {}
    for item in args.filters:
        name, sep, value = item.partition("=")
        if not sep:
            return _fail("query", f"{item!r} is not NAME=VALUE")
        params[name] = value
    try:
        selection = parse_query(params)
    except QueryError as exc:
        return _fail("query", str(exc))
    if _log_directory(args) is None:
        return _fail("query", f"{args.directory}: no such log directory")
    with _index(args) as index:
        index.update()
        if selection.aggregating:
            rows = aggregate(
                index, selection.filter, selection.by, selection.bucket_s, selection.metrics
            )
            output: object = rows
        else:
            page = search(index, selection.filter, selection.limit, selection.cursor)
            rows = [summarize(entry) for entry in page.entries]
            output = page.to_json()
    if args.format == "json":
        print(json.dumps(output, indent=2))
    else:
        sys.stdout.write(render_table(rows))
        cursor = output.get("cursor") if isinstance(output, dict) else None
        if cursor:
            print(f"more: --cursor {cursor}")
    return 0


def prune(args: argparse.Namespace) -> int:
    import asyncio

    from audit.keys import Signer
    from audit.writer import StreamLocked
    from audit.writer import prune as prune_stream

    if _log_directory(args) is None:
        return _fail("prune", f"{args.directory}: no such log directory")
    try:
        signer = Signer.from_pem(Path(args.private).read_bytes())
        result = asyncio.run(prune_stream(Path(args.directory), args.stream, args.before, signer))
    except StreamLocked:
        return _fail("prune", f"stream {args.stream!r} is being written: stop its gateway first")
    except (OSError, ValueError) as exc:
        return _fail("prune", str(exc))
    if result.pruned_first is None:
        print("nothing to prune: no closed segment lies wholly before that sequence number")
    else:
        print(
            f"pruned records {result.pruned_first}..{result.pruned_last} of {args.stream} "
            f"({len(result.removed)} segments); a signed tombstone keeps the chain verifiable"
        )
    return 0


def reindex(args: argparse.Namespace) -> int:
    if _log_directory(args) is None:
        return _fail("reindex", f"{args.directory}: no such log directory")
    with _index(args) as index:
        added = index.rebuild()
        print(f"indexed {added} records into {index.db_path}")
    return 0


def add_audit_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    audit = command(
        commands,
        "audit",
        "the tamper-evident audit log: keys, verify, query",
        "Make the checkpoint signing key, verify a log with public keys alone, query it.",
        "  seawall audit keygen --private audit.key --public audit.pub\n"
        "  seawall audit verify audit-log/ --public-key audit.pub\n"
        "  seawall audit query audit-log/ tenant=acme status=5xx since=1h",
    ).add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    p = command(
        audit,
        "keygen",
        "write a new Ed25519 key pair for signing checkpoints",
        "Write a private key (PKCS#8 PEM, mode 0600) for `audit.signing_key_file` (or an "
        "env: variable's value) and its public key for verifiers.",
        "  seawall audit keygen --private /etc/seawall/audit.key --public audit.pub",
    )
    p.add_argument("--private", required=True, help="where to write the private key")
    p.add_argument("--public", required=True, help="where to write the public key")
    p.set_defaults(func=keygen)

    p = command(
        audit,
        "pubkey",
        "print the public key of a private key",
        "Print the public key (PEM) that verifies checkpoints signed with a private key.",
        "  seawall audit pubkey --private /etc/seawall/audit.key > audit.pub",
    )
    p.add_argument("--private", required=True, help="the private key file")
    p.set_defaults(func=pubkey)

    p = command(
        audit,
        "verify",
        "check every record, link and checkpoint signature (exit 0 clean, 1 otherwise)",
        "Verify a log directory offline: every stream's records, their hash chain, and "
        "every checkpoint's Ed25519 signature. Prints the first bad sequence number of a "
        "stream and what is wrong; records after the last checkpoint are reported as the "
        "unsigned tail (a failure only with --strict).",
        "  seawall audit verify audit-log/ --public-key audit.pub --public-key old.pub",
    )
    p.add_argument("directory", help="the log directory (audit.directory)")
    p.add_argument(
        "--public-key", action="append", required=True, help="a public key file (repeatable)"
    )
    p.add_argument("--strict", action="store_true", help="an unsigned tail is a failure")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=verify)

    p = command(
        audit,
        "query",
        "search or aggregate the records",
        "Search the records (newest first, a page at a time) or aggregate them. Parameters "
        "are NAME=VALUE, as GET /admin/audit takes them: filters (subtree, tenant, key, "
        "model, deployment, status: 200 or 5xx, error, rule, flag, refused: a limit "
        "level, kind, endpoint, request_id, trace_id, since, until: unix, ISO-8601 or "
        "15m/2h/7d ago, text: words in opted-in content), limit and cursor to page, by "
        "(fields) and bucket (1m) to aggregate, metrics to choose what aggregates show. "
        "The index (SQLite) is brought up to date from the segments first.",
        "  seawall audit query audit-log/ subtree=acme status=5xx since=1h\n"
        "  seawall audit query audit-log/ by=model bucket=1m since=1d --format json",
    )
    p.add_argument("directory", help="the log directory (audit.directory)")
    p.add_argument("filters", nargs="*", metavar="NAME=VALUE", help="filters")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--index", help=f"the index file (default: DIRECTORY/{INDEX_NAME})")
    p.set_defaults(func=query)

    p = command(
        audit,
        "prune",
        "remove a stream's oldest segments, leaving a signed tombstone",
        "Remove the closed segments of a stream whose records all come before --before "
        "(a sequence number). The chain records a tombstone naming the range and the signed "
        "checkpoint that closed it, so what remains still verifies. The stream's gateway "
        "must be stopped (its writer holds the stream); sign with the stream's current key.",
        "  seawall audit prune audit-log/ --stream pod-a-w0 --before 1000000 --private audit.key",
    )
    p.add_argument("directory", help="the log directory (audit.directory)")
    p.add_argument("--stream", required=True, help="the stream (a sub-directory)")
    p.add_argument("--before", type=int, required=True, help="prune records before this seq")
    p.add_argument("--private", required=True, help="the signing key (PEM)")
    p.set_defaults(func=prune)

    p = command(
        audit,
        "reindex",
        "rebuild the query index from the segments",
        "Drop the index and rebuild it from the segments (they are the source of truth).",
        "  seawall audit reindex audit-log/",
    )
    p.add_argument("directory", help="the log directory (audit.directory)")
    p.add_argument("--index", help=f"the index file (default: DIRECTORY/{INDEX_NAME})")
    p.set_defaults(func=reindex)
