"""The server log an operator reads (gateway/server/logs.py, gateway/access_log.py):
every line of `seawall serve` has a timestamp and a level; at INFO a request is one
access line carrying its request id, and guard decisions are not INFO lines;
`--log-format json` is one object per line; an outage of the limit store is two
lines (its start, and its end with the counts), never one per request; and no
configured secret reaches any line, in the message or in the structured fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from common.redact import LOG_REDACTION, Redactor
from gateway.server.logs import JsonFormatter, TextFormatter
from gateway.sources.etcd import EtcdSource
from routing.breaker import Breaker
from routing.config import BreakerSettings
from tests.servers.scripted import Answer, ScriptedUpstream, error_body
from tests.services import EtcdServer, RedisServer
from tests.support import SeawallProcess, ServerThread, write_config

#: The first line `seawall serve` prints, before logging is set up (gateway/cli.py).
BANNER = "seawall listening on"
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(\S+) "
)
#: The provider key of the quoting upstream's deployment (long: its fragments count).
API_KEY = "sk-logs-test-upstream-key-0123456789abcdefXYZW"


def key(name: str, tenant: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": name, "key_sha256": hashlib.sha256(name.encode()).hexdigest()}
    if tenant:
        entry["tenant"] = tenant
    return entry


def mock(name: str) -> dict[str, Any]:
    return {"id": name, "provider": "mock", "model": "mock-gpt", "retry": {"attempts": 1}}


def message(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **extra}


@contextmanager
def served(config: Path, *args: str) -> Iterator[SeawallProcess]:
    """`seawall serve` at INFO on a free port; its whole output is in `output` once
    the block is left (the process stopped, its drain ended early, and its pipe
    drained)."""
    process = SeawallProcess(
        ["serve", "--config", str(config), "--port", "0", "--log-level", "info", *args]
    ).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop(drain=False)
        while process.lines.get(timeout=10) is not None:
            pass


def logged(process: SeawallProcess) -> list[str]:
    """The log lines (the banner printed before logging is set up left out)."""
    return [line.rstrip("\n") for line in process.output if BANNER not in line]


# -- one served gateway, in both formats -------------------------------------------------


def quoting(number: int, body: dict[str, Any]) -> Answer:
    """An upstream that refuses the gateway's key, quoting it (as OpenAI's 401 does)."""
    return Answer(401, error_body(f"Incorrect API key provided: {API_KEY}", "auth", "bad_key"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(ScriptedUpstream(quoting)) as server:
        yield server


@pytest.fixture
def governed(tmp_path: Path, upstream: ServerThread) -> Path:
    leaky = {
        "id": "leaky",
        "provider": "openai",
        "model": "m",
        "api_base": upstream.url + "/v1",
        "api_key": API_KEY,
        "retry": {"attempts": 1},
    }
    return write_config(
        tmp_path / "seawall.yaml",
        {
            "models": [
                {"name": "g", "deployments": [mock("fast")]},
                {"name": "leaky", "deployments": [leaky]},
            ],
            "tenants": [{"id": "acme"}],
            "keys": [key("acme-key", "acme")],
            "policies": {
                "rules": [
                    {"id": "long", "when": "max_tokens > 10", "effect": "flag", "flag": "long"}
                ]
            },
        },
    )


def exercise(url: str) -> list[str]:
    """A few requests of every kind; their request ids, in order."""
    auth = {"authorization": "Bearer acme-key"}
    sent = [
        httpx.post(f"{url}/v1/chat/completions", json=message(model="g"), headers=auth),
        httpx.post(  # flagged by a policy
            f"{url}/v1/chat/completions", json=message(model="g", max_tokens=50), headers=auth
        ),
        httpx.post(f"{url}/v1/chat/completions", json=message(model="nope"), headers=auth),
        httpx.post(  # 401
            f"{url}/v1/chat/completions",
            json=message(model="g"),
            headers={"authorization": "Bearer wrong"},
        ),
        httpx.post(f"{url}/v1/chat/completions", json=message(model="leaky"), headers=auth),
    ]
    assert [r.status_code for r in sent[:4]] == [200, 200, 404, 401]
    assert sent[4].status_code >= 400  # the upstream refused the gateway's key
    return [r.headers["x-seawall-request-id"] for r in sent]


def assert_no_secret(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert API_KEY not in text and API_KEY[:8] not in text, text


def test_every_line_has_a_time_and_a_level_and_a_request_is_one_info_line(
    governed: Path,
) -> None:
    with served(governed) as process:
        ids = exercise(process.url)
    lines = logged(process)
    assert lines
    for line in lines:
        assert TEXT_LINE.match(line), line
    access = [line for line in lines if TEXT_LINE.match(line).group(2) == "seawall.access"]  # type: ignore[union-attr]
    assert len(access) == len(ids), access
    for rid, line in zip(ids, access, strict=True):
        assert " INFO " in line and f"[{rid}]" in line, line
        assert " latency_ms=" in line and " config_version=" in line, line
    assert "status=401" in access[3] and "error=invalid_api_key" in access[3], access[3]
    assert (
        "tenant=acme" in access[0] and "key=acme-key" in access[0] and "route=g/fast" in access[0]
    )
    for rid in ids:  # no other INFO line names the request
        info = [x for x in lines if rid in x and TEXT_LINE.match(x).group(1) == "INFO"]  # type: ignore[union-attr]
        assert len(info) == 1, info
    assert not [x for x in lines if "guard policy" in x], "guard decisions are DEBUG lines"
    failed = [x for x in lines if "failed upstream" in x]
    assert failed and all("[redacted]" in x for x in failed), failed
    assert_no_secret(lines)


def test_json_lines(governed: Path) -> None:
    with served(governed, "--log-format", "json") as process:
        ids = exercise(process.url)
    records = [orjson.loads(line) for line in logged(process)]
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    access = [r for r in records if r["logger"] == "seawall.access"]
    assert [r["request_id"] for r in access] == ids
    assert all(r["level"] == "INFO" for r in access)
    assert access[0]["status"] == 200 and access[0]["tenant"] == "acme"
    assert access[0]["route"] == "g/fast" and isinstance(access[0]["latency_ms"], float)
    assert access[3]["status"] == 401 and access[3]["error"] == "invalid_api_key"
    assert_no_secret([line.rstrip("\n") for line in process.output])


def test_no_access_line_when_turned_off(governed: Path) -> None:
    with served(governed, "--no-access-log") as process:
        exercise(process.url)
    lines = logged(process)
    assert not [x for x in lines if " seawall.access " in x]
    assert all(TEXT_LINE.match(line) for line in lines)


# -- a limit store outage is an episode ---------------------------------------------------


def test_a_limit_store_outage_is_two_lines_with_the_counts(
    tmp_path: Path, redis: RedisServer
) -> None:
    config = write_config(
        tmp_path / "limits.yaml",
        {
            "models": [{"name": "g", "deployments": [mock("fast")]}],
            "tenants": [
                {
                    "id": "lenient",
                    "limits": {"requests_per_minute": 100_000, "on_store_failure": "fail_open"},
                },
                {"id": "strict", "limits": {"requests_per_minute": 100_000}},
            ],
            "keys": [key("lenient-key", "lenient"), key("strict-key", "strict")],
            "limits": {"store": redis.url, "store_timeout_ms": 300},
        },
    )
    unchecked = refused = 0
    with served(config) as process, httpx.Client(base_url=process.url) as client:

        def send(who: str) -> httpx.Response:
            return client.post(
                "/v1/chat/completions",
                json=message(model="g"),
                headers={"authorization": f"Bearer {who}-key"},
            )

        assert "x-ratelimit-limit-requests" in send("lenient").headers
        redis.kill()
        for n in range(50):
            response = send("lenient" if n % 2 else "strict")
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "limit_store_unavailable"
                refused += 1
            elif "x-ratelimit-limit-requests" not in response.headers:
                unchecked += 1
        redis.start()
        for _ in range(200):  # until an admission is decided by the store again
            response = send("strict")
            if response.status_code == 200 and "x-ratelimit-limit-requests" in response.headers:
                break
            refused += response.status_code == 503
        else:
            pytest.fail("the store never answered again")
    assert unchecked >= 25 and refused >= 25, (unchecked, refused)
    lines = logged(process)
    episode = [x for x in lines if "limit store" in x]
    assert len(episode) == 2, episode
    started, ended = episode
    assert " WARNING " in started and "unavailable" in started
    assert " WARNING " in ended and "answered again after" in ended
    assert f"{unchecked} requests admitted unchecked, {refused} refused" in ended, ended
    assert f"admitted_unchecked={unchecked} refused={refused}" in ended
    warnings = [x for x in lines if TEXT_LINE.match(x).group(1) != "INFO"]  # type: ignore[union-attr]
    assert warnings == episode  # nothing per request


# -- the formatters keep the redaction ----------------------------------------------------


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_structured_fields_lose_the_secrets_too(formatter: logging.Formatter) -> None:
    """The record factory scrubs a record's message and arguments; the fields of
    `extra` are set after it, so the formatter scrubs them."""
    secret = "configured-secret-value-0123456789"
    redactor = Redactor([secret])
    LOG_REDACTION.install()
    LOG_REDACTION.add(redactor)
    try:
        logger = logging.getLogger("seawall.test_logs")
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            1,
            "upstream said %s",
            (f"bad key {secret}",),
            None,
            extra={
                "request_id": "r-1",
                "detail": f"quoted {secret[:8]}****",
                "event": {"rule": "r", "detail": secret},
                "count": 3,
            },
        )
        line = formatter.format(record)
    finally:
        LOG_REDACTION.discard(redactor)
    assert secret not in line and secret[:8] not in line, line
    assert "[redacted]" in line and "r-1" in line and "3" in line


# -- the other episodes ---------------------------------------------------------------------


def test_a_breaker_opening_is_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    breaker = Breaker("dep-a", BreakerSettings(consecutive_failures=3), clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="seawall.routing"):
        for _ in range(3):
            permit = breaker.allow()
            assert permit is not None
            breaker.failure(permit)
        for _ in range(7):  # kept away while open
            assert not breaker.available()
        now[0] += 31
        probe = breaker.allow()
        assert probe is not None
        breaker.failure(probe)  # the probe fails: open again, a DEBUG line
        now[0] += 61
        probe = breaker.allow()
        assert probe is not None
        breaker.success(probe)
    assert breaker.state == "closed"
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert lines == [
        (
            logging.WARNING,
            "deployment dep-a: circuit breaker opened after 3 consecutive failures; "
            "no traffic for 30 s, then probes (logged again when it closes)",
        ),
        (
            logging.INFO,
            "deployment dep-a: circuit breaker closed after 92.0 s open: 1 failed probes "
            "reopened it, 7 attempts were kept away",
        ),
    ]


async def test_a_lost_etcd_source_is_two_lines(
    etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = EtcdSource(
        etcd.endpoint, "/seawall/", resync_s=60.0, connect_timeout_s=0.5,
        backoff_initial_s=0.05, backoff_max_s=0.2,
    )  # fmt: skip

    async def follow() -> None:
        async for _ in source.watch():
            pass

    with caplog.at_level(logging.DEBUG, logger="seawall.sources"):
        following = asyncio.create_task(follow())
        try:
            await eventually(lambda: source.stats.connected)
            etcd.kill()
            await eventually(lambda: source.stats.errors >= 3)
            etcd.start()
            await eventually(lambda: source.stats.connected, within_s=20)
        finally:
            await source.aclose()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    shown = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert len(shown) == 2, [r.getMessage() for r in shown]
    lost, back = shown
    assert "lost" in lost.getMessage() and lost.levelno == logging.WARNING
    assert "back after" in back.getMessage()
    assert back.attempts >= 3  # type: ignore[attr-defined]
    assert f"({back.attempts} failed attempts)" in back.getMessage()  # type: ignore[attr-defined]


async def eventually(check: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)
