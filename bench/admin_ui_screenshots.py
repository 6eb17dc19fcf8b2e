"""Screenshots of the admin page for the docs: docs/img/admin-ui-{light,dark}-{laptop,phone}.png.

    make screenshots        # or: .venv/bin/python bench/admin_ui_screenshots.py

Serves a small fleet on loopback (bench/admin_ui.py's `config_for`: 8 mock
deployments in 4 groups, 4 tenants with limits, SLOs and a policy, the audit log on),
opens the page in Debian's Chromium (Playwright with `executable_path`, headless) as
the root admin, and drives it for `--seconds` (default 40): traffic from every
tenant, one in ten requests over its policy's cap; one tenant near its request limit
and one over it; a deployment refusing connections (its breaker opens); a group
failing 30% of calls (its SLO burns); a config change and a canary rollout. Then
takes each scheme at a laptop's and a phone's width.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from admin_ui import config_for  # noqa: E402
from playwright.sync_api import ViewportSize, sync_playwright  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from tests.support import ServerThread  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "docs" / "img"
VIEWPORTS: dict[str, ViewportSize] = {
    "laptop": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}
ROOT_KEY = {"authorization": "Bearer root-admin"}


def chat(url: str, tenant: int, big: bool = False) -> None:
    body = {
        "model": f"g{tenant % 4}",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5000 if big else 16,
    }
    headers = {"authorization": f"Bearer t{tenant:02d}-user"}
    httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def traffic(url: str, until: float) -> None:
    """Steady traffic from tenants 2 and 3 (group g2 fails 30% of calls)."""
    n = 0
    while time.monotonic() < until:
        chat(url, 2 + n % 2, big=n % 10 == 0)
        n += 1
        time.sleep(0.05)


def scenario(url: str, config: dict[str, Any]) -> None:
    """Config changes first (later, the burning SLOs freeze them), then the faults."""

    def admin(method: str, path: str, **kwargs: Any) -> None:
        httpx.request(method, url + path, headers=ROOT_KEY, timeout=10, **kwargs).raise_for_status()

    changed = {**config, "models": [dict(m) for m in config["models"]]}
    changed["models"][0]["deployments"] = [
        {**d, "weight": 2} if d["id"] == "d00" else d for d in config["models"][0]["deployments"]
    ]
    admin("PUT", "/admin/config", content=yaml.safe_dump(changed))
    changed["models"][3]["deployments"] = [
        {**d, "weight": 3} for d in changed["models"][3]["deployments"]
    ]
    admin("PUT", "/admin/config?rollout=canary", content=yaml.safe_dump(changed))
    admin(
        "POST",
        "/admin/chaos",
        json={"fault": "connect_refused", "target": "d01", "duration_s": 600},
    )
    admin(
        "POST",
        "/admin/chaos",
        json={
            "fault": "http_error",
            "status": 503,
            "p": 0.3,
            "target": "group:g2",
            "duration_s": 600,
        },
    )
    for _ in range(55):  # t00: 55 of its 60 requests a minute
        chat(url, 0)
    for _ in range(75):  # t01: past its 70; in its group g1, d01's breaker opens
        chat(url, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        config = config_for(8, 4, Path(directory), latency_ms=15)
        with ServerThread(create_app(parse_config(config, "<screenshots>"))) as server:
            url = server.url
            sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=sandbox
                )
                watcher = browser.new_context()
                watcher.add_init_script("sessionStorage.setItem('seawall.adminKey', 'root-admin')")
                watching = watcher.new_page()  # polls all along: the sparklines' samples
                watching.goto(url + "/admin/ui")
                until = time.monotonic() + args.seconds
                background = threading.Thread(target=traffic, args=(url, until), daemon=True)
                background.start()
                scenario(url, config)
                background.join()
                for scheme in ("light", "dark"):
                    for name, viewport in VIEWPORTS.items():
                        context = browser.new_context(viewport=viewport, color_scheme=scheme)
                        context.add_init_script(
                            "sessionStorage.setItem('seawall.adminKey', 'root-admin')"
                        )
                        page = context.new_page()
                        page.goto(url + "/admin/ui")
                        page.locator("#deployments tbody tr[data-deployment]").first.wait_for()
                        page.locator("#decisions tbody tr").first.wait_for()
                        path = OUT / f"admin-ui-{scheme}-{name}.png"
                        page.screenshot(path=str(path), full_page=True)
                        print(path.relative_to(ROOT))
                        context.close()
                browser.close()


if __name__ == "__main__":
    main()
