"""Reload-to-effect latency: from writing a new config to the gateway serving it.

For a file (replaced by rename, as editors and config tools do) and for an etcd put,
`--changes` times (default 50): write version n, then poll `/readyz` until it names
version n's id. Prints median and max per source (the kubelet's own sync delay,
before a ConfigMap change reaches the pod's volume, is not included: it is the
kubelet's, not seawall's).

    .venv/bin/python bench/reload_latency.py [--changes 50]

Needs `etcd` (Debian's etcd-server) for the etcd row; the row is skipped without it.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.versions import documents_id  # noqa: E402
from tests.services import EtcdServer  # noqa: E402


def config(n: int) -> str:
    deployment = {"id": "a", "provider": "mock", "model": "m", "weight": 1 + n / 1000}
    return yaml.safe_dump({"models": [{"name": "g", "deployments": [deployment]}]})


def serve(spec: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", spec, "--port", "0",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"seawall listening on http://[\d.]+:(\d+)", line)
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            break
    else:
        raise SystemExit("the gateway did not start")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the gateway never became ready")


def wait_for(url: str, version: str) -> float:
    started = time.monotonic()
    with httpx.Client() as client:
        while client.get(url + "/readyz").json()["config_version"] != version:
            if time.monotonic() - started > 30:
                raise SystemExit(f"version {version} never served")
    return time.monotonic() - started


def measure(name: str, changes: int, spec: str, write: Any) -> dict[str, Any]:
    process, url = serve(spec)
    try:
        samples = []
        for n in range(1, changes + 1):
            text = config(n)
            expected = write(text)
            started = time.monotonic()
            wait_for(url, expected)
            samples.append((time.monotonic() - started) * 1000)
    finally:
        process.terminate()
        process.wait(30)
    return {"source": name, "median_ms": statistics.median(samples), "max_ms": max(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="seawall-reload-"))
    try:
        path = scratch / "seawall.yaml"
        path.write_text(config(0))

        def write_file(text: str) -> str:
            temporary = scratch / ".seawall.yaml.new"
            temporary.write_text(text)
            os.replace(temporary, path)
            return documents_id({"seawall.yaml": text})

        rows.append(measure("file (rename over)", args.changes, str(path), write_file))
        if shutil.which("etcd"):
            etcd = EtcdServer().start()
            try:

                def write_etcd(text: str) -> str:
                    key = base64.b64encode(b"/seawall/seawall.yaml").decode()
                    value = base64.b64encode(text.encode()).decode()
                    httpx.post(etcd.url + "/v3/kv/put", json={"key": key, "value": value})
                    return documents_id({"seawall.yaml": text})

                write_etcd(config(0))
                spec = f"etcd://{etcd.endpoint}/seawall/"
                rows.append(measure("etcd put", args.changes, spec, write_etcd))
            finally:
                etcd.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("| source | changes | median ms | max ms |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['source']} | {args.changes} | {row['median_ms']:.1f} | {row['max_ms']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
