"""The audit log through a running gateway: one record per request with what was
decided, admin actions with their actor, content only where a tenant opted in, no
secret anywhere, and reads scoped to the reader's subtree (an attacker's test: a
sibling tenant's auditor and admin try to read the victim's records).

The gateway runs on a real loopback socket; records are read back from the segment
files (and, for `/admin/audit`, through the SQLite index), after the gateway
flushed them: `GET /admin/audit` waits for every record queued before it, and
stopping the gateway closes the writer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from audit.keys import KeyRing, generate_keypair
from audit.verify import render_report, verify
from tests.audit_support import audit_section, make_keypair, records
from tests.isolation import call, chat, two_tenants
from tests.support import running_gateway


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return make_keypair(tmp_path)


RULES = [
    {"id": "tag-all", "tenant": "red", "when": "true", "effect": "flag", "flag": "seen"},
    {
        "id": "no-big",
        "tenant": "red",
        "when": "max_tokens > 1000",
        "effect": "deny",
        "message": "Too big.",
    },
]


def config(directory: Path, key_file: Path, **audit: Any) -> dict[str, Any]:
    return two_tenants(
        tenant_extra={
            "blue": {"audit": {"content": True}, "limits": {"requests_per_minute": 1000}},
            "red": {"limits": {"requests_per_minute": 3}},
        },
        policies={"rules": RULES},
        audit=audit_section(directory, key_file, **audit),
    )


@pytest.fixture
def served(tmp_path: Path, keypair: tuple[Path, Path]) -> Iterator[tuple[str, Path]]:
    directory = tmp_path / "log"
    with running_gateway(config(directory, keypair[0])) as gw:
        yield gw.url, directory


def test_each_request_has_a_record_of_what_was_decided(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    directory = tmp_path / "log"
    with running_gateway(config(directory, keypair[0])) as gw:
        ok = chat(gw.url, "red-user")
        denied = chat(gw.url, "red-user", json={"max_tokens": 5000})
        streamed = chat(gw.url, "blue-user", json={"stream": True})
        faulted = chat(
            gw.url,
            "blue-all",
            model="blue-chat",
            headers={"x-seawall-chaos": "http_error;status=503;target=blue-own"},
        )
        limited = [chat(gw.url, "red-user") for _ in range(3)][-1]
        anonymous = chat(gw.url, "nobody")
    assert (ok.status_code, denied.status_code, streamed.status_code) == (200, 403, 200)
    assert (faulted.status_code, limited.status_code, anonymous.status_code) == (503, 429, 401)
    by_id = {r["request_id"]: r for r in records(directory, "request")}

    record = by_id[ok.headers["x-seawall-request-id"]]
    assert record["tenant"] == "red" and record["tenants"] == ["root", "org", "red"]
    assert record["key"] == "red-user" and record["endpoint"] == "chat"
    assert record["model"] == "chat" and record["deployment"] in ("shared-a", "shared-b")
    assert record["route"] == [{"deployment": record["deployment"], "outcome": "ok"}]
    assert record["status"] == 200 and record["error"] is None
    assert record["usage"]["total_tokens"] > 0 and record["latency_ms"] > 0
    assert record["config_version"] == ok.headers["x-seawall-config-version"]
    assert record["policy"]["matched"] == ["tag-all"] and record["policy"]["flags"] == ["seen"]
    assert record["limits"] == [{"level": "tenant:red", "decision": "admitted", "limit": None}]
    assert record["content"] is None  # red did not opt in
    assert record["stream"] is False and record["ttft_ms"] is None

    record = by_id[denied.headers["x-seawall-request-id"]]
    assert record["status"] == 403 and record["error"] == "policy_denied"
    assert record["policy"]["denied"] == "no-big" and record["deployment"] is None

    record = by_id[streamed.headers["x-seawall-request-id"]]
    assert record["stream"] is True and record["cut"] is False
    assert 0 < record["ttft_ms"] <= record["latency_ms"]
    assert "hi" in record["content"]["prompt"]  # blue opted in

    record = by_id[faulted.headers["x-seawall-request-id"]]
    assert record["status"] == 503 and record["chaos"]["faults"]

    record = by_id[limited.headers["x-seawall-request-id"]]
    assert record["status"] == 429
    assert record["limits"] == [
        {"level": "tenant:red", "decision": "refused", "limit": "requests_per_minute"}
    ]

    record = by_id[anonymous.headers["x-seawall-request-id"]]
    assert record["status"] == 401 and record["tenant"] is None and record["key"] is None

    report = verify(directory, KeyRing.from_files([keypair[1]]))
    assert report.ok, report


def test_content_only_for_tenants_that_opt_in(served: tuple[str, Path]) -> None:
    url, directory = served
    secret_words = "the blue project's launch date"
    blue = chat(url, "blue-user", json={"messages": [{"role": "user", "content": secret_words}]})
    red = chat(url, "red-user", json={"messages": [{"role": "user", "content": secret_words}]})
    assert blue.status_code == red.status_code == 200
    call(url, "root-admin", "GET", "/admin/audit")  # flushes
    by_id = {r["request_id"]: r for r in records(directory, "request")}
    blue_record = by_id[blue.headers["x-seawall-request-id"]]
    assert secret_words in blue_record["content"]["prompt"]
    assert blue_record["content"]["completion"]
    assert by_id[red.headers["x-seawall-request-id"]]["content"] is None
    assert sum(secret_words in json.dumps(r) for r in by_id.values()) == 1


def test_no_secret_in_any_record(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """Every configured secret (provider key, receipt key, the keys' bearer tokens, the
    signing key itself) is grepped for in every byte of the log."""
    directory = tmp_path / "log"
    tokens = {"alice": "sk-alice-token-0123456789", "admin": "sk-admin-token-0123456789"}
    provider_key, receipt_key = "sk-provider-secret-9876543210", "receipt-secret-" + "x" * 24
    document = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {"id": "m", "provider": "mock", "model": "mock-gpt", "api_key": provider_key}
                ],
            }
        ],
        "tenants": [{"id": "team", "audit": {"content": True}}],
        "keys": [
            {
                "id": "alice",
                "tenant": "team",
                "key_sha256": hashlib.sha256(tokens["alice"].encode()).hexdigest(),
            },
            {
                "id": "admin",
                "roles": ["admin", "auditor"],
                "key_sha256": hashlib.sha256(tokens["admin"].encode()).hexdigest(),
            },
        ],
        "receipts": {"keys": [{"id": "r1", "secret": receipt_key}]},
        "audit": audit_section(directory, keypair[0]),
    }
    with running_gateway(document) as gw:
        for _ in range(3):
            assert chat(gw.url, tokens["alice"]).status_code == 200
        # A client that pastes a secret into its prompt does not get it recorded either.
        leaked = {"messages": [{"role": "user", "content": f"my key is {provider_key}"}]}
        assert chat(gw.url, tokens["alice"], json=leaked).status_code == 200
        assert chat(gw.url, "wrong-token").status_code == 401
        changed = yaml.safe_dump({**document, "tenants": [{"id": "team"}]})
        put = call(gw.url, tokens["admin"], "PUT", "/admin/config", content=changed)
        assert put.status_code == 200, put.text
    everything = b"".join(p.read_bytes() for p in directory.rglob("*.jsonl"))
    assert everything.count(b'"kind":"request"') == 5
    signing_key = keypair[0].read_text()
    for secret in [*tokens.values(), provider_key, receipt_key, signing_key.splitlines()[1]]:
        assert secret.encode() not in everything, secret[:6]


def test_admin_actions_are_recorded_with_their_actor(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    directory = tmp_path / "log"
    document = config(directory, keypair[0])
    with running_gateway(document) as gw:
        bad = call(gw.url, "root-admin", "PUT", "/admin/config", content="models: 3\n")
        assert bad.status_code == 400
        first = call(gw.url, "root-admin", "GET", "/admin/config").json()
        changed = yaml.safe_dump({**document, "policies": {"rules": []}})
        applied = call(gw.url, "root-admin", "PUT", "/admin/config", content=changed)
        assert applied.status_code == 200, applied.text
        back = call(
            gw.url,
            "root-admin",
            "POST",
            "/admin/config/rollback",
            json={"version": first["version"]["id"]},
        )
        assert back.status_code == 200, back.text
        fault = {"fault": "latency", "ms": 1, "target": "red-own", "duration_s": 60}
        scheduled = call(gw.url, "red-all", "POST", "/admin/chaos", json=fault)
        assert scheduled.status_code == 201, scheduled.text
        assert call(gw.url, "red-all", "DELETE", "/admin/chaos").status_code == 200
    actions = [(r["action"], r["actor"], r["scope"]) for r in records(directory, "admin")]
    assert actions == [
        ("config.refused", "root-admin", "root"),
        ("config.applied", "root-admin", "root"),
        ("config.rolled_back", "root-admin", "root"),
        ("chaos.scheduled", "red-all", "red"),
        ("chaos.cleared", "red-all", "red"),
    ]
    refused = records(directory, "admin")[0]
    assert refused["detail"]["problems"] and refused["tenants"] == ["root"]
    assert records(directory, "admin")[3]["tenants"] == ["root", "org", "red"]


def query(url: str, reader: str, **params: str) -> httpx.Response:
    return call(url, reader, "GET", "/admin/audit", params=params)


def test_reads_are_scoped_to_the_readers_subtree(served: tuple[str, Path]) -> None:
    """The attacker (`red-all`: every role of tenant red) asks for blue's records in
    every way the query language allows; it only ever gets its own."""
    url, _ = served
    blue = chat(url, "blue-user", json={"messages": [{"role": "user", "content": "blue plans"}]})
    red = chat(url, "red-user")
    assert blue.status_code == red.status_code == 200
    blue_id = blue.headers["x-seawall-request-id"]
    fault = {"fault": "latency", "ms": 1, "target": "blue-own", "duration_s": 60}
    assert call(url, "blue-all", "POST", "/admin/chaos", json=fault).status_code == 201

    for params in (
        {},
        {"tenant": "blue"},
        {"subtree": "blue"},
        {"subtree": "org"},
        {"subtree": "root"},
        {"key": "blue-user"},
        {"text": "plans"},
        {"kind": "admin"},
    ):
        answer = query(url, "red-all", **params)
        assert answer.status_code in (200, 403), answer.text
        seen = json.dumps(answer.json())
        assert blue_id not in seen and "blue-user" not in seen and "blue-all" not in seen, params
    grouped = query(url, "red-all", by="tenant").json()["data"]
    assert {row["tenant"] for row in grouped} <= {"red"}

    org = query(url, "org-admin", tenant="blue", kind="request").json()["data"]
    assert [r["request_id"] for r in org] == [blue_id]
    everything = query(url, "root-admin", kind="admin").json()["data"]
    assert [r["action"] for r in everything] == ["chaos.scheduled"]
    assert query(url, "red-user").status_code == 403  # no auditor or admin role
    assert query(url, "nobody").status_code == 401
    assert query(url, "red-all", status="abc").status_code == 400


def test_a_required_tenant_is_refused_while_the_queue_is_full(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    """blue requires audit and refuses on a full queue; red drops. The queue holds one
    record and its writer is held, so it stays full."""
    directory = tmp_path / "log"
    document = config(directory, keypair[0], queue_records=1)
    document["tenants"][2]["audit"] = {"required": True, "on_full": "refuse"}
    with running_gateway(document) as gw:
        gateway = gw.app.state.gateway
        log = gateway.state.audit
        with log.writer.held():
            assert chat(gw.url, "red-user").status_code == 200  # fills the queue
            refused = chat(gw.url, "blue-user")
            dropped = chat(gw.url, "red-user")
            assert dropped.status_code == 200
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "audit_unavailable"
        assert log.counts["refused"] == 1 and log.counts["dropped"] >= 1


def test_a_reload_rotates_the_signing_key(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """Checkpoints after the reload name the new key; the verifier needs both public
    keys, and a reload naming an unreadable key is refused (the old key signs on)."""
    new_private, new_public = tmp_path / "new.key", tmp_path / "new.pub"
    generate_keypair(new_private, new_public)
    directory = tmp_path / "log"
    document = config(directory, keypair[0])
    with running_gateway(document) as gw:
        assert chat(gw.url, "red-user").status_code == 200
        call(gw.url, "root-admin", "GET", "/admin/audit")  # flushed, signed by the old key
        broken = {**document, "audit": audit_section(directory, tmp_path / "missing.key")}
        refused = call(gw.url, "root-admin", "PUT", "/admin/config", content=yaml.safe_dump(broken))
        assert refused.status_code == 400 and "missing.key" in refused.text
        rotated = {**document, "audit": audit_section(directory, new_private)}
        put = call(gw.url, "root-admin", "PUT", "/admin/config", content=yaml.safe_dump(rotated))
        assert put.status_code == 200, put.text
        assert chat(gw.url, "blue-user").status_code == 200
    both = verify(directory, KeyRing.from_files([keypair[1], new_public]))
    assert both.ok, both
    old_only = verify(directory, KeyRing.from_files([keypair[1]]))
    assert not old_only.ok and "unknown key" in render_report(old_only)
