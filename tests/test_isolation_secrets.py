"""The secrets wall: no configured secret reaches a client, a view or a log line.

Every secret-bearing field of the config holds a distinctive value here, some as `env:`
references and some literal: deployment api keys and header values, receipt keys, a
key's bearer token, the Redis store's password (a real redis-server that accepts no
one else), a tool endpoint's password. The upstream quotes back the gateway's
credentials in every way it can fail (400, 401, 429, 500, an error event inside a
stream), and the attacker (`red-all`, every role of tenant red, admin included) and
every admin key read everything they can. Then no response body, header or stream
event, no admin view, no check-config output and no log record of the whole run may
hold any secret, or any 12-character piece of one (DESIGN.md section 10b, issue 16
item 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import httpx
import orjson
import pytest
import redis as redis_client
import yaml
from aetcd import rpc

from gateway.cli import main
from gateway.sources import Documents, SourceError, source_for
from gateway.sources.etcd import EtcdSource
from tests.isolation import call, chat, mock, two_tenants
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, chunk, error_body
from tests.services import EtcdServer, RedisServer, free_port
from tests.support import ServerThread, running_gateway

#: name -> value; `ENV` says which reach the config as `env:NAME` references.
SECRETS = {
    "API_KEY_ENV": "sk-proj-ENVapikey-7c1f0a9e5d3b2468XYZW",
    "API_KEY_LITERAL": "sk-proj-LITapikey-0e9d8c7b6a594837QRST",
    "HEADER_ENV": "hdr-env-x-api-key-b7e3d1f9a2c4",
    "HEADER_LITERAL": "hdr-literal-auth-4f2e8a6c0b1d",
    "RECEIPT_ENV": "receipt-env-secret-91d3b5f7c2e4a6",
    "RECEIPT_LITERAL": "receipt-literal-secret-3a5c7e9b1d2f",
    "BLUE_TOKEN_ENV": "blue-bearer-token-env-6d8f0b2a4c",
    "REDIS_PASSWORD_ENV": "redis-pw-env-e1c3a5b7d9f2",
    "TOOL_PASSWORD": "tool-endpoint-pw-literal-58b0d2f4",
    #: Only in documents that are refused or replace the first: never served first.
    "REDIS_PASSWORD_NEW": "redis-pw-refused-0a2c4e6b8d1f",
    "HEADER_ROTATED": "hdr-rotated-literal-9e7c5a3b1d0f",
}
ENV = {name: f"SEAWALL_TEST_{name}" for name in SECRETS if name.endswith("_ENV")}
#: A piece of a secret this long must appear nowhere (shorter ones may: `sk-proj-`
#: begins every OpenAI project key).
FRAGMENT = 12

KEYWORDS = ("q400", "q401", "q429", "q500", "qstream-error", "qstream-cut")
ADMIN_KEYS = ("root-admin", "org-admin", "red-all", "blue-all")
ADMIN_VIEWS = (
    "/admin/config",
    "/admin/config/versions",
    "/admin/routing",
    "/admin/limits",
    "/admin/chaos",
    "/openapi.json",
    "/metrics",
)


def leaks(text: str) -> list[str]:
    """The secrets (or 12-character pieces of one) that `text` holds."""
    found = []
    for name, secret in SECRETS.items():
        pieces = {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
        if any(piece in text for piece in pieces):
            found.append(name)
    return found


def quoting(headers: dict[str, str]) -> str:
    """What a careless provider says: every credential it was sent, verbatim."""
    return (
        f"Incorrect API key provided: {headers.get('authorization')}; "
        f"x-api-key {headers.get('x-api-key')}; x-custom-auth {headers.get('x-custom-auth')}"
    )


class QuotingUpstream(ScriptedUpstream):
    """Answers by the keyword in the request: each way of failing, quoting the
    credentials it received; plain success otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.script = self.answer

    def answer(self, number: int, body: dict[str, Any]) -> Answer:
        said = quoting(self.headers[number - 1])
        text = orjson.dumps(body).decode()
        word = next((k for k in KEYWORDS if k in text), None)
        echo = {"x-request-id": f"req_{said[-40:]}"}
        if word == "q400":
            return Answer(
                400,
                {
                    "error": {
                        "message": f"Invalid 'temperature': {said}",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": "invalid_value",
                    }
                },
                headers=echo,
            )
        if word == "q401":
            return Answer(401, error_body(said, "invalid_request_error", "invalid_api_key"))
        if word == "q429":
            return Answer(429, error_body(said, "rate_limit_error"), headers=echo)
        if word == "q500":
            return Answer(500, raw=f"<html>{said}</html>".encode(), content_type="text/html")
        if word == "qstream-error":
            failure = {"error": {"message": f"stream failed: {said}", "type": "server_error"}}
            return Answer(events=[chunk("a"), failure])
        if word == "qstream-cut":
            return Answer(events=[chunk("a"), chunk(said), chunk("c")], cut_after=1)
        if body.get("stream"):
            return Answer(events=[chunk("fine")])
        return Answer(body=chat_body())


def deployment(deployment_id: str, url: str, api_key: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "provider": "openai",
        "model": "m",
        "api_base": url + "/v1",
        "api_key": api_key,
        "retry": {"attempts": 1},
        "timeouts": {"connect_ms": 1000, "ttft_ms": 3000, "total_ms": 5000},
        **extra,
    }


def config(upstream_url: str, redis_url: str, expose: bool) -> dict[str, Any]:
    shared = deployment(
        "shared-a",
        upstream_url,
        f"env:{ENV['API_KEY_ENV']}",
        headers={
            "x-api-key": f"env:{ENV['HEADER_ENV']}",
            "x-custom-auth": SECRETS["HEADER_LITERAL"],
        },
    )
    red_own = deployment("red-own", upstream_url, SECRETS["API_KEY_LITERAL"])
    document = two_tenants(
        shared=[shared],
        own={"red": [red_own], "blue": [mock("blue-own")]},
        tenant_extra={"red": {"limits": {"requests_per_minute": 100_000}}},
        server={"expose_upstream_errors": expose},
        limits={"store": redis_url},
        tools=[
            {
                "name": "leaky_tool",
                "endpoint": f"http://tooluser:{SECRETS['TOOL_PASSWORD']}@127.0.0.1:{free_port()}/run",
                "timeout_ms": 2000,
                "retry": {"attempts": 1},
            }
        ],
        receipts={
            "keys": [
                {"id": "k-env", "secret": f"env:{ENV['RECEIPT_ENV']}"},
                {"id": "k-literal", "secret": SECRETS["RECEIPT_LITERAL"]},
            ]
        },
    )
    document["keys"].append(
        {"id": "blue-env", "key": f"env:{ENV['BLUE_TOKEN_ENV']}", "tenant": "blue"}
    )
    return document


def store_url(server: RedisServer, password: str) -> str:
    return f"redis://seawall:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def guarded_redis(redis: RedisServer) -> RedisServer:
    """The test Redis, accepting only user `seawall` with its password."""
    admin = redis_client.Redis(port=redis.port)
    admin.acl_setuser(
        "seawall",
        enabled=True,
        passwords=[f"+{SECRETS['REDIS_PASSWORD_ENV']}"],
        keys=["*"],
        commands=["+@all"],
    )
    admin.acl_setuser("default", enabled=False, reset=True)
    admin.close()
    return redis


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, variable in ENV.items():
        monkeypatch.setenv(variable, SECRETS[name])


@pytest.fixture
def upstream() -> Iterator[tuple[QuotingUpstream, ServerThread]]:
    scripted = QuotingUpstream()
    with ServerThread(scripted) as server:
        yield scripted, server


class Seen:
    """Everything a client was handed, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, response: httpx.Response, body: str | None = None) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(f"{response.status_code}\n{headers}\n{body or response.text}")
        return response

    def stream(self, url: str, key: str, path: str, body: dict[str, Any]) -> str:
        headers = {"authorization": f"Bearer {key}"}
        with httpx.stream("POST", url + path, json=body, headers=headers, timeout=15) as response:
            text = "".join(response.iter_text())
            self.add(response, text)
        return text


def attack(gateway: ServerThread, seen: Seen, scripted: QuotingUpstream) -> None:
    """Every way the gateway relays an upstream failure, by the attacker's key."""
    url = gateway.url
    for model in ("chat", "red-chat"):
        for word in ("q400", "q401", "q429", "q500"):
            response = seen.add(chat(url, "red-all", model, json={"messages": _say(word)}))
            assert response.status_code >= 400, response.text
        for word in ("qstream-error", "qstream-cut", "q400"):
            body = {"model": model, "messages": _say(word), "stream": True}
            seen.stream(url, "red-all", "/v1/chat/completions", body)
    for word in ("q400", "qstream-error"):
        body = {"model": "chat", "input": word, "stream": word.startswith("qstream")}
        if body["stream"]:
            seen.stream(url, "red-all", "/v1/responses", body)
        else:
            seen.add(call(url, "red-all", "POST", "/v1/responses", json=body))
    embedding = {"model": "chat", "input": "q400"}
    seen.add(call(url, "red-all", "POST", "/v1/embeddings", json=embedding))
    invoke = {"tool_call_id": "call_1", "arguments": {}}
    response = seen.add(call(url, "red-all", "POST", "/v1/tools/leaky_tool/invoke", json=invoke))
    assert response.status_code == 502, response.text
    # Admitted through the password-protected Redis (fail_closed: a 503 otherwise).
    ok = seen.add(chat(url, "red-user", "red-chat"))
    assert ok.status_code == 200, ok.text
    # The env: header values and api keys did reach the upstream.
    sent = scripted.headers[0]
    assert sent["authorization"] == f"Bearer {SECRETS['API_KEY_ENV']}"
    assert sent["x-api-key"] == SECRETS["HEADER_ENV"]
    assert sent["x-custom-auth"] == SECRETS["HEADER_LITERAL"]


def _say(word: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": word}]


def read_views(gateway: ServerThread, seen: Seen) -> None:
    for key in ADMIN_KEYS:
        for path in ADMIN_VIEWS:
            seen.add(call(gateway.url, key, "GET", path))


def change_config(gateway: ServerThread, seen: Seen, document: dict[str, Any]) -> None:
    """A refused version (a restart-only change of the store's password) and an
    applied one (a rotated header value), through the admin API."""
    store = document["limits"]["store"]
    new_store = store.replace(f"env:{ENV['REDIS_PASSWORD_ENV']}", SECRETS["REDIS_PASSWORD_NEW"])
    refused = yaml.safe_dump({**document, "limits": {"store": new_store}})
    response = seen.add(call(gateway.url, "root-admin", "PUT", "/admin/config", content=refused))
    assert response.status_code == 400, response.text
    assert "redis://seawall:***@" in response.text  # the problem names the store, masked
    rotated = yaml.safe_dump(_rotated(document))
    response = seen.add(call(gateway.url, "root-admin", "PUT", "/admin/config", content=rotated))
    assert response.status_code == 200, response.text
    for key in ("red-all", "org-admin"):  # a tenant admin may not
        seen.add(call(gateway.url, key, "PUT", "/admin/config", content=rotated))


def _rotated(document: dict[str, Any]) -> dict[str, Any]:
    models = orjson.loads(orjson.dumps(document["models"]))
    models[0]["deployments"][0]["headers"]["x-custom-auth"] = SECRETS["HEADER_ROTATED"]
    return {**document, "models": models}


@pytest.mark.parametrize("expose", [False, True], ids=["default", "expose_upstream_errors"])
def test_no_secret_reaches_a_client_a_view_or_a_log(
    expose: bool,
    upstream: tuple[QuotingUpstream, ServerThread],
    guarded_redis: RedisServer,
    secrets_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted, server = upstream
    document = config(
        server.url, store_url(guarded_redis, f"env:{ENV['REDIS_PASSWORD_ENV']}"), expose
    )
    seen = Seen()
    with (
        running_gateway(document) as gateway,
        caplog.at_level(logging.DEBUG, logger="seawall"),
        caplog.at_level(logging.INFO, logger="uvicorn"),
    ):
        attack(gateway, seen, scripted)
        read_views(gateway, seen)
        change_config(gateway, seen, document)
        read_views(gateway, seen)
        attack(gateway, seen, scripted)
        root = call(gateway.url, "root-admin", "GET", "/admin/config").json()
    # The rotated header reached the upstream (and was quoted back) once applied.
    shared = [sent for sent in scripted.headers if "x-custom-auth" in sent]
    assert shared[-1]["x-custom-auth"] == SECRETS["HEADER_ROTATED"]
    for text in seen.texts:
        assert not leaks(text), (leaks(text), text)
    assert "[redacted]" in "\n".join(seen.texts)  # the provider's words, kept and cleaned
    shown = root["config"]
    assert shown["limits"]["store"].startswith("redis://seawall:***@127.0.0.1:")
    assert shown["models"][0]["deployments"][0]["headers"] == {
        "x-api-key": "**********",
        "x-custom-auth": "**********",
    }
    assert shown["tools"][0]["endpoint"].startswith("http://tooluser:***@127.0.0.1:")
    # The log keeps what the operator needs (the failure, its deployment and request
    # id), and loses only the credentials.
    logged = [r for r in caplog.records if "failed upstream" in r.getMessage()]
    assert logged and all("[redacted]" in r.getMessage() for r in logged)
    for record in caplog.records:
        assert not leaks(record.getMessage()), record.getMessage()
    assert not leaks(caplog.text)


def test_check_config_never_prints_a_secret(
    tmp_path: Path,
    guarded_redis: RedisServer,
    secrets_env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = config(
        "http://127.0.0.1:1", store_url(guarded_redis, SECRETS["REDIS_PASSWORD_NEW"]), False
    )
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(document))
    assert main(["check-config", str(good)]) == 0
    broken = {**document, "server": {"port": "not a port"}, "chaos": {"enabled": "maybe"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(broken) + "\nlimits: {store: 'redis://u:pw-in-duplicate-key-0@h'}\n"
    )
    with pytest.raises(SystemExit):
        main(["check-config", str(bad)])
    for variable in ENV.values():
        monkeypatch.delenv(variable)
    assert main(["check-config", "--skip-env", str(good)]) == 0
    output = capsys.readouterr()
    text = output.out + output.err
    assert "ok (3 model groups" in text and "problem(s)" in text
    assert not leaks(text), text
    assert "pw-in-duplicate-key-0" not in text


def test_a_redis_store_refusing_the_password_logs_no_password(
    guarded_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "redis-pw-wrong-7d5b3f1e9c0a"
    document = two_tenants(
        tenant_extra={"red": {"limits": {"requests_per_minute": 10}}},
        limits={"store": store_url(guarded_redis, wrong)},
    )
    with running_gateway(document) as gateway, caplog.at_level(logging.DEBUG, logger="seawall"):
        response = chat(gateway.url, "red-user", "red-chat")
        limits = call(gateway.url, "root-admin", "GET", "/admin/limits")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "limit_store_unavailable"
    for text in (response.text, limits.text, caplog.text):
        assert wrong not in text and wrong[:FRAGMENT] not in text
    assert "redis://seawall:***@127.0.0.1" in limits.text


# -- the config source's credentials --------------------------------------------------

ETCD_PASSWORD = "etcd-root-pw-env-c4e6a8b0d2f1"


async def _enable_etcd_auth(etcd: EtcdServer) -> None:
    """etcd with authentication on: user `root` (etcd's superuser) and a password."""
    channel = grpc.aio.insecure_channel(etcd.endpoint)
    try:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=ETCD_PASSWORD))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await auth.AuthEnable(rpc.AuthEnableRequest())
    finally:
        await channel.close()


async def test_an_etcd_source_with_credentials_reads_writes_and_never_shows_them(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await _enable_etcd_auth(etcd)
    monkeypatch.setenv("SEAWALL_TEST_ETCD_PASSWORD", ETCD_PASSWORD)
    spec = f"etcd://root:env:SEAWALL_TEST_ETCD_PASSWORD@{etcd.endpoint}/seawall/"
    source = source_for(spec, resync_s=0.5)
    assert isinstance(source, EtcdSource)
    assert source.origin == f"etcd://{etcd.endpoint}/seawall/"
    assert ETCD_PASSWORD not in repr(source.credentials)
    with caplog.at_level(logging.DEBUG, logger="seawall"):
        try:
            await source.write({"seawall.yaml": "models: []\n"})
            documents = await source.read()
            watch = cast(AsyncGenerator[Documents, None], source.watch())
            async with contextlib.aclosing(watch):
                first = await anext(watch)
        finally:
            await source.aclose()
        assert documents.files == {"seawall.yaml": "models: []\n"} == first.files
        # Without the password, or with a wrong one, etcd refuses; nothing says it.
        wrong_password = "etcd-wrong-pw-3b5d7f9a1c"
        for wrong in (
            f"etcd://{etcd.endpoint}/seawall/",
            f"etcd://root:{wrong_password}@{etcd.endpoint}/seawall/",
        ):
            refused = source_for(wrong, connect_timeout_s=2, request_timeout_s=2)
            with pytest.raises(SourceError) as raised:
                await refused.read()
            await refused.aclose()
            for secret in (ETCD_PASSWORD, wrong_password):
                assert secret[:FRAGMENT] not in str(raised.value)
        assert "authentication as 'root' failed" in str(raised.value)
    assert ETCD_PASSWORD[:FRAGMENT] not in caplog.text
    missing = "etcd://root:env:SEAWALL_TEST_UNSET_VARIABLE@127.0.0.1:2379/seawall/"
    with pytest.raises(SourceError, match="SEAWALL_TEST_UNSET_VARIABLE is not set"):
        source_for(missing)
    with pytest.raises(SourceError, match="is not HOST:PORT") as raised:
        source_for(f"etcd://root:{ETCD_PASSWORD}@127.0.0.1/seawall/")  # no port
    assert ETCD_PASSWORD[:FRAGMENT] not in str(raised.value)
    with pytest.raises(SourceError, match="unknown config source scheme") as raised:
        source_for(f"consul://root:{ETCD_PASSWORD}@127.0.0.1:8500/seawall/")
    assert ETCD_PASSWORD[:FRAGMENT] not in str(raised.value)


def test_check_config_from_etcd_with_credentials_shows_them_masked(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_enable_etcd_auth(etcd))
    literal = f"etcd://root:{ETCD_PASSWORD}@{etcd.endpoint}/seawall/"
    document = yaml.safe_dump(two_tenants())

    async def write() -> None:
        source = source_for(literal)
        try:
            await source.write({"seawall.yaml": document})
        finally:
            await source.aclose()

    asyncio.run(write())
    monkeypatch.setenv("SEAWALL_TEST_CONFIG_SPEC", literal)
    for spec in (literal, "env:SEAWALL_TEST_CONFIG_SPEC"):
        assert main(["check-config", spec]) == 0
    with pytest.raises(SystemExit):
        main(["check-config", literal.replace(ETCD_PASSWORD, "etcd-wrong-pw-3b5d7f9a1c")])
    output = capsys.readouterr()
    text = output.out + output.err
    assert f"etcd://root:***@{etcd.endpoint}/seawall/: ok" in text
    assert "etcd-wrong-pw" not in text and ETCD_PASSWORD[:FRAGMENT] not in text
