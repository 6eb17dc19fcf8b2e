"""What tests of the audit log in a running gateway share: its config section, a
signing key pair, and the records of a directory as written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit.keys import generate_keypair

#: A short group-commit window, so records reach disk soon after their request.
WINDOW_MS = 5


def audit_section(directory: Path, key_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "directory": str(directory),
        "stream": "test",
        "signing_key_file": str(key_file),
        "batch_window_ms": WINDOW_MS,
        "checkpoint_interval_ms": 50,
        **extra,
    }


def records(directory: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Every record of every stream, in sequence order."""
    found = []
    for segment in sorted(directory.glob("*/*.jsonl")):
        for line in segment.read_bytes().splitlines():
            record = json.loads(line)
            if record["kind"] != "checkpoint" and (kind is None or record["kind"] == kind):
                found.append(record)
    return found


def make_keypair(directory: Path) -> tuple[Path, Path]:
    """An Ed25519 signing key and its public key, as files in `directory`."""
    private, public = directory / "audit.key", directory / "audit.pub"
    generate_keypair(private, public)
    return private, public
