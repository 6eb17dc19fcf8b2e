"""`seawall audit ...` as a user runs it, on the log of a real gateway: keygen,
pubkey, verify (clean, then tampered), query (search, aggregation, bad input),
reindex and prune; every failure a clear message and exit 2, never a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from gateway.cli import main
from tests.isolation import chat, two_tenants
from tests.support import running_gateway


def seawall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`seawall audit ARGS` in `cwd`: the command line's own entry point, in this
    process (a subprocess each would spend ~1.5 s importing the gateway); stdout,
    stderr and the exit status as a subprocess would give them."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(["audit", *args])
            except SystemExit as exc:
                status = int(exc.code or 0)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def test_the_audit_commands_on_a_real_log(tmp_path: Path) -> None:
    made = subprocess.run(  # once as a real process: the installed command line
        [sys.executable, "-m", "gateway", "audit", "keygen", "--private", "audit.key",
         "--public", "audit.pub"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0 and "key id" in made.stdout
    again = seawall("keygen", "--private", "audit.key", "--public", "audit.pub", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
    pub = seawall("pubkey", "--private", "audit.key", cwd=tmp_path)
    assert pub.stdout == (tmp_path / "audit.pub").read_text()

    audit = {
        "enabled": True,
        "directory": str(tmp_path / "audit-log"),
        "stream": "cli",
        "signing_key_file": str(tmp_path / "audit.key"),
        "batch_window_ms": 5,
    }
    with running_gateway(two_tenants(audit=audit)) as gw:
        for key in ("red-user", "blue-user", "red-user"):
            assert chat(gw.url, key).status_code == 200
        assert chat(gw.url, "red-user", model="blue-chat").status_code == 404

    ok = seawall("verify", "audit-log", "--public-key", "audit.pub", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout and "4 records" in ok.stdout

    found = seawall("query", "audit-log", "tenant=red", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    rows = found.stdout.splitlines()[2:]
    assert len(rows) == 3 and all(" red " in row for row in rows)
    grouped = seawall(
        "query", "audit-log", "by=tenant,status", "metrics=count", "--format", "json", cwd=tmp_path
    )
    assert grouped.returncode == 0, grouped.stderr
    assert '"count": 2' in grouped.stdout and '"status": 404' in grouped.stdout
    bad = seawall("query", "audit-log", "statsu=500", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown parameter 'statsu'" in bad.stderr
    assert "Traceback" not in bad.stderr

    rebuilt = seawall("reindex", "audit-log", cwd=tmp_path)
    assert rebuilt.returncode == 0 and "indexed 4 records" in rebuilt.stdout
    pruned = seawall(
        "prune", "audit-log", "--stream", "cli-w0", "--before", "3", "--private", "audit.key",
        cwd=tmp_path,
    )  # fmt: skip
    assert pruned.returncode == 0 and "nothing to prune" in pruned.stdout  # one open segment

    [segment] = (tmp_path / "audit-log" / "cli-w0").glob("*.jsonl")
    data = segment.read_bytes()
    segment.write_bytes(data.replace(b'"tenant":"blue"', b'"tenant":"bleu"', 1))
    tampered = seawall("verify", "audit-log", "--public-key", "audit.pub", cwd=tmp_path)
    assert tampered.returncode == 1
    assert "first bad seq 2: edited" in tampered.stdout

    for args in (
        ("verify", "nowhere", "--public-key", "audit.pub"),
        ("verify", "audit-log", "--public-key", "missing.pub"),
        ("query", "nowhere"),
        ("pubkey", "--private", "audit.pub"),
    ):
        failed = seawall(*args, cwd=tmp_path)
        assert failed.returncode == 2 and "Traceback" not in failed.stderr, args
