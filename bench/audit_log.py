"""What the audit log costs: appending with group commit, verifying, bytes per record.

    .venv/bin/python bench/audit_log.py [--records N] [--dir DIR]

- append: N typical request records (~800 bytes as a line) submitted to a `Writer`
  as fast as the queue takes them (`submit_wait`: the `block` policy), fsync per
  batch, checkpoints every second and at each 64 MiB segment roll; records/s from
  the first submit to `close` (everything durable and signed);
- verify: `audit.verify.verify` over the directory just written (one process, one
  thread), best of three;
- size: bytes on disk per record (checkpoints included).

The directory is a temporary one (`--dir` to choose the file system: fsync is
only measured on a real disk, and /tmp may be RAM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit.keys import KeyRing, Signer
from audit.verify import verify
from audit.writer import Writer, WriterSettings, WriterStats


def request_record(i: int) -> dict[str, Any]:
    """A request record the shape audit/record.py gives, ~800 bytes as a line."""
    return {
        "kind": "request",
        "time": 1765000000.0 + i / 1000,
        "request_id": f"req_{i:024d}",
        "trace_id": f"{i:032x}",
        "tenant": "acme-eu",
        "tenants": ["root", "acme", "acme-eu"],
        "key": "key_3f9a8b7c",
        "endpoint": "chat",
        "model": "gpt-4o-mini",
        "deployment": "openai-eu-1",
        "route": [{"deployment": "openai-eu-1", "outcome": "ok"}],
        "status": 200,
        "error": None,
        "usage": {"prompt_tokens": 1234, "completion_tokens": 321, "total_tokens": 1555},
        "cost": 0.00123,
        "latency_ms": 812.5,
        "ttft_ms": None,
        "stream": False,
        "cut": False,
        "config_version": "cfg_9a8b7c6d5e4f",
        "policy": {
            "version": "pol_123456",
            "matched": ["r1", "r2"],
            "flags": ["pii"],
            "denied": None,
            "errors": [],
        },
        "limits": [
            {"level": "key:key_3f9a8b7c", "decision": "admitted", "limit": None},
            {"level": "tenant:acme", "decision": "admitted", "limit": None},
        ],
        "guards": [],
        "chaos": None,
        "content": None,
    }


async def append(
    directory: Path, signer: Signer, records: list[dict[str, Any]]
) -> tuple[float, WriterStats]:
    writer = Writer(directory, "worker-0", signer, WriterSettings(capacity=10_000))
    await writer.start()
    started = time.perf_counter()
    for record in records:
        if not writer.submit(record):
            await writer.submit_wait(record)
    await writer.close()
    return time.perf_counter() - started, writer.stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=args.dir))
    try:
        signer = Signer.generate()
        records = [request_record(i) for i in range(args.records)]
        seconds, stats = asyncio.run(append(directory, signer, records))
        size = sum(f.stat().st_size for f in (directory / "worker-0").glob("*.jsonl"))
        keyring = KeyRing([signer.public_key])
        best = float("inf")
        report = None
        for _ in range(3):
            started = time.perf_counter()
            report = verify(directory, keyring)
            best = min(best, time.perf_counter() - started)
        assert report is not None and report.ok, report
        print(f"{args.records} records, {os.cpu_count()} CPUs, {directory.parent}\n")
        print("| measure | value |")
        print("|---|---|")
        print(f"| append (fsync per batch) | {args.records / seconds:,.0f} records/s |")
        counts = f"{stats.batches} / {stats.fsyncs} / {stats.checkpoints}"
        print(f"| batches / fsyncs / checkpoints | {counts} |")
        print(f"| verify | {report.records / best:,.0f} records/s |")
        print(f"| bytes per record on disk | {size / args.records:,.0f} |")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
