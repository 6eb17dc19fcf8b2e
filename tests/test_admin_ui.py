"""The admin page (`GET /admin/ui`) and its state (`GET /admin/ui/state`).

The page runs in Debian's Chromium, driven by Playwright (`executable_path`; its own
browser download is never used), one browser for the module: it loads without a
console error or a failed request, shows a breaker opening within 2 s of an outage,
shows a rollout's candidate, keeps a team admin to its subtree, and can be driven
from the keyboard. The state endpoint is tested over HTTP without a browser: roles,
scoping of every section, headers.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from audit.keys import generate_keypair
from gateway.admin.ui.history import BurnHistory
from tests.isolation import KEYS, call, chat, keys, mock, two_tenants
from tests.support import ServerThread, running_gateway

CHROMIUM = "/usr/bin/chromium"
#: The page polls every second; what it shows must follow within this.
OUTAGE_SHOWN_S = 2.0

#: The isolation suite's keys, and one that may only read the audit log.
UI_KEYS = {**KEYS, "red-auditor": ("red", ["auditor"])}

SECTIONS = {"generated_at", "viewer", "config", "deployments", "slos", "limits", "chaos", "audit"}


def keyless_config() -> dict[str, Any]:
    """No keys (the local caller on loopback has every role): group `chat` of two
    mocks, and group `outage` of one deployment whose breaker opens after 2 failures."""
    return {
        "models": [
            {"name": "chat", "deployments": [mock("mock-a"), mock("mock-b")]},
            {
                "name": "outage",
                "deployments": [
                    mock("victim", breaker={"consecutive_failures": 2, "open_seconds": 60})
                ],
            },
        ],
        "chaos": {"enabled": True},
    }


def slo(name: str, tenant: str | None) -> dict[str, Any]:
    return {"name": name, "kind": "availability", "objective": 0.99, "tenant": tenant}


def keyed_config(audit_dir: Path) -> dict[str, Any]:
    """The isolation suite's two sibling tenants, with limits, SLOs, a policy denial
    for `red` and the audit log on."""
    private, public = audit_dir / "audit.key", audit_dir / "audit.pub"
    generate_keypair(private, public)
    return two_tenants(
        tenant_extra={
            "red": {"limits": {"requests_per_minute": 100}},
            "blue": {"limits": {"requests_per_minute": 100}},
        },
        keys=keys(UI_KEYS),
        slos=[slo("red-availability", "red"), slo("blue-availability", "blue"), slo("all", None)],
        policies={
            "rules": [
                {
                    "id": "red-no-big",
                    "tenant": "red",
                    "when": "max_tokens > 1000",
                    "effect": "deny",
                    "message": "Too big.",
                }
            ]
        },
        audit={
            "enabled": True,
            "directory": str(audit_dir / "log"),
            "stream": "test",
            "signing_key_file": str(private),
            "batch_window_ms": 5,
            "fsync": False,
        },
    )


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def keyless() -> Iterator[ServerThread]:
    with running_gateway(keyless_config()) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    directory = tmp_path_factory.mktemp("admin-ui")
    try:
        with running_gateway(keyed_config(directory)) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Watched:
    """A page with everything that went wrong on it collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("requestfailed", self._failed)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def breaker_cell(page: Page, deployment: str) -> Any:
    return page.locator(f'#deployments tr[data-deployment="{deployment}"] td.breaker .pill')


def deployment_ids(page: Page) -> set[str]:
    return set(page.locator("#deployments tbody tr[data-deployment]").evaluate_all(
        "rows => rows.map(r => r.dataset.deployment)"
    ))  # fmt: skip


def state(server: ServerThread, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + "/admin/ui/state", headers=headers, timeout=10)


def use_key(page: Page, key: str) -> None:
    page.get_by_label("Admin or auditor key").fill(key)
    page.get_by_role("button", name="Use key").click()


# -- in the browser ------------------------------------------------------------------


def test_the_page_loads_and_updates_without_a_console_error_or_a_failed_request(
    keyless: ServerThread, watched: Watched
) -> None:
    page = watched.page
    response = page.goto(keyless.url + "/admin/ui")
    assert response is not None and response.status == 200
    expect(breaker_cell(page, "mock-a")).to_have_text("closed")
    assert {"mock-a", "mock-b", "victim"} <= deployment_ids(page)
    # It keeps polling: two more answers arrive.
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/admin/ui/state"), timeout=3000) as got:
            pass
        assert got.value.status == 200
    expect(page.locator("#audit-note")).to_contain_text("The audit log is off")
    expect(page.locator("#rollout")).to_contain_text("idle")
    assert watched.errors == []
    assert watched.failed == []


def test_a_breaker_opening_shows_within_2_s_of_the_outage(
    keyless: ServerThread, watched: Watched
) -> None:
    page = watched.page
    page.goto(keyless.url + "/admin/ui")
    cell = breaker_cell(page, "victim")
    expect(cell).to_have_text("closed")
    outage = time.monotonic()
    fault = {"fault": "connect_refused", "target": "victim", "duration_s": 30}
    assert httpx.post(keyless.url + "/admin/chaos", json=fault).status_code == 201
    statuses = [
        httpx.post(
            keyless.url + "/v1/chat/completions",
            json={"model": "outage", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ).status_code
        for _ in range(2)
    ]
    assert all(status >= 500 for status in statuses), statuses
    left_ms = (OUTAGE_SHOWN_S - (time.monotonic() - outage)) * 1000
    assert left_ms > 0, "the outage itself took longer than the bound"
    expect(cell).to_have_text("open", timeout=left_ms)
    expect(page.locator("#faults")).to_contain_text("connect_refused")
    expect(page.locator("#status")).to_contain_text("Breaker of victim: open")
    httpx.delete(keyless.url + "/admin/chaos")


def test_keyboard_reaches_the_key_field_and_the_controls(
    keyless: ServerThread, watched: Watched
) -> None:
    page = watched.page
    page.goto(keyless.url + "/admin/ui")
    expect(breaker_cell(page, "mock-a")).to_be_visible()
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert {"key", "pause", "refresh"} <= set(reached), reached
    # Pause from the keyboard: no more polling until resumed.
    page.focus("#pause")
    page.keyboard.press("Enter")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if r.url.endswith("/state") else None)
    page.wait_for_timeout(1500)  # an observation window longer than the 1 s poll
    assert polled == []
    with page.expect_request(lambda r: r.url.endswith("/admin/ui/state"), timeout=2000):
        page.keyboard.press("Enter")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "false")


def test_a_team_admin_sees_only_its_subtree(keyed: ServerThread, watched: Watched) -> None:
    page = watched.page
    page.goto(keyed.url + "/admin/ui")
    # Keys are configured: without one, the state is refused and the page says so.
    expect(page.locator("#problem")).to_contain_text("401")
    use_key(page, "red-all")
    expect(breaker_cell(page, "red-own")).to_have_text("closed")
    assert deployment_ids(page) == {"shared-a", "shared-b", "red-own"}
    expect(page.locator("#slos")).to_contain_text("red-availability")
    expect(page.locator("#slos")).not_to_contain_text("blue-availability")
    expect(page.locator("#limits")).to_contain_text("tenant:red")
    expect(page.locator("#limits")).not_to_contain_text("tenant:blue")
    expect(page.locator("#summary")).to_contain_text("tenant red")
    expect(page.locator("#problem")).to_be_hidden()
    # The key is kept for the tab, not in the field.
    assert page.get_by_label("Admin or auditor key").input_value() == ""
    assert page.evaluate("sessionStorage.getItem('seawall.adminKey')") == "red-all"
    # The sibling's admin sees the sibling's side.
    page.get_by_role("button", name="Forget key").click()
    use_key(page, "blue-all")
    expect(breaker_cell(page, "blue-own")).to_have_text("closed")
    assert "red-own" not in deployment_ids(page)


def test_a_rollout_shows_its_candidate(browser: Browser) -> None:
    config = keyless_config()
    with running_gateway(config) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(server.url + "/admin/ui")
            expect(page.locator("#rollout")).to_contain_text("idle")
            changed = {**config, "models": [*config["models"]]}
            changed["models"][0] = {
                "name": "chat",
                "deployments": [mock("mock-a", weight=3), mock("mock-b")],
            }
            answer = httpx.put(
                server.url + "/admin/config?rollout=canary",
                content=yaml.safe_dump(changed),
                headers={"content-type": "application/yaml"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            candidate = state(server).json()["config"]["rollout"]["candidate"]
            assert candidate is not None
            rollout = page.locator("#rollout")
            expect(rollout).to_contain_text(f"#{candidate['number']} {candidate['id']}")
            expect(rollout).to_contain_text("running")
        finally:
            context.close()


# -- the state, over HTTP --------------------------------------------------------------


def test_the_state_needs_the_admin_or_auditor_role(keyed: ServerThread) -> None:
    anonymous = state(keyed)
    assert anonymous.status_code == 401
    assert set(anonymous.json()["error"]) >= {"message", "type", "code"}
    user = state(keyed, "red-user")
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "permission_denied"
    assert "red-user" in user.json()["error"]["message"]
    assert state(keyed, "red-auditor").status_code == 200
    assert state(keyed, "red-all").status_code == 200


def test_the_page_holds_no_data_and_forbids_inline_script_and_framing(
    keyed: ServerThread,
) -> None:
    page = httpx.get(keyed.url + "/admin/ui")  # no key: a browser cannot send one
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for deployment in ("shared-a", "red-own", "blue-own"):
        assert deployment not in page.text
    answers = [page, httpx.get(keyed.url + "/admin/ui/app.js"), state(keyed, "red-all")]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # the one script is a file
    missing = httpx.get(keyed.url + "/admin/ui/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_every_section_is_there_and_scoped(keyed: ServerThread) -> None:
    fault = {"fault": "latency", "ms": 1, "target": "red-own", "duration_s": 30}
    assert call(keyed.url, "red-all", "POST", "/admin/chaos", json=fault).status_code == 201
    root, red, blue = (state(keyed, key).json() for key in ("root-admin", "red-all", "blue-all"))
    for answer in (root, red, blue):
        assert set(answer) == SECTIONS

    def deployments(answer: dict[str, Any]) -> set[str]:
        groups = answer["deployments"]["groups"]
        return {d["id"] for group in groups for d in group["deployments"]}

    assert deployments(root) == {"shared-a", "shared-b", "red-own", "blue-own"}
    assert deployments(red) == {"shared-a", "shared-b", "red-own"}
    assert deployments(blue) == {"shared-a", "shared-b", "blue-own"}
    assert {s["name"] for s in root["slos"]} == {"red-availability", "blue-availability", "all"}
    assert [s["name"] for s in red["slos"]] == ["red-availability"]
    assert {row["level"] for row in red["limits"]["limits"]} == {"tenant:red"}
    assert "refused_totals" not in red["limits"] and "refused_totals" in root["limits"]
    assert [f["target"] for f in red["chaos"]["faults"]] == ["red-own"]
    assert blue["chaos"]["faults"] == []
    assert red["viewer"]["tenants"] == ["red"]
    # A team's admin sees the serving version and the rollout's state, not the config's
    # history, its origins (key ids) or the rollout's reasons.
    assert set(red["config"]) == {"version", "rollout"}
    assert set(red["config"]["version"]) == {"id", "number", "loaded_at"}
    assert set(red["config"]["rollout"]) == {"state", "baseline", "candidate", "samples", "verdict"}
    assert set(red["config"]["rollout"]["verdict"]) == {"result"}
    assert {"versions", "refused", "reloads"} <= set(root["config"])
    assert root["config"]["version"]["origin"]
    assert root["audit"]["enabled"] is True


def test_recent_decisions_are_read_from_the_audit_log_within_scope(keyed: ServerThread) -> None:
    denied = chat(keyed.url, "red-user", json={"max_tokens": 5000})
    assert denied.status_code == 403
    request_id = denied.headers["x-seawall-request-id"]

    def decisions(key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = state(keyed, key).json()["audit"]["decisions"]
        return [d for d in found if d["request_id"] == request_id]

    deadline = time.monotonic() + 10  # kept answers are refreshed every 2 s
    while not decisions("red-all") and time.monotonic() < deadline:
        time.sleep(0.1)
    [seen] = decisions("red-all")
    assert seen["tenant"] == "red" and seen["status"] == 403
    assert any("red-no-big" in what for what in seen["what"])
    while not decisions("root-admin") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert decisions("root-admin")
    assert decisions("blue-all") == []


# -- the sparklines' history ---------------------------------------------------------------


def test_the_burn_history_is_bounded_and_sampled_at_most_every_interval() -> None:
    from slo.config import SloConfig
    from slo.state import SloTracker

    tracker = SloTracker([SloConfig.model_validate(slo("a", None))], clock=lambda: 1000.0)
    history = BurnHistory(points=3, every_s=5.0)
    for second in range(40):
        history.sample(tracker.snapshot(1000.0 + second), 1000.0 + second)
    points = history.of("a")
    assert len(points) == 3
    assert [p[0] for p in points] == [1025.0, 1030.0, 1035.0]
    history.sample([], 1100.0)  # the SLO is no longer configured: dropped
    assert history.of("a") == []
