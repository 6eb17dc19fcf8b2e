"""Secrets as a property of the config's types: the guard over every field, the secret
types (`Secret`, `SecretUrl`), finding every secret of a config, and the redactor and
log redaction built from them (common/secrets.py, common/redact.py)."""

from __future__ import annotations

import inspect
import logging
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from common.redact import LOG_REDACTION, REDACTED, LogRedaction, Redactor
from common.secrets import SecretUrl, mask_url, secret_values
from gateway.config import GatewayConfig, parse_config

# -- the guard: every field that looks secret has a secret type -----------------------

#: Field names that say "credential" (matched against the whole name).
SECRET_NAME = re.compile(r"key|secret|passw|token|credential|authori[sz]ation|auth\b")
#: Field names of URLs and addresses, which may carry credentials in their userinfo.
URL_NAME = re.compile(r"url|uri|endpoint|api_base|dsn|store|address")
#: Field names of header maps, whose values may be credentials (`x-api-key`).
HEADERS_NAME = re.compile(r"header")

#: Fields that look secret and are not, each with the reason.
NOT_SECRET = {
    "KeyConfig.key_sha256": "the sha256 of a bearer token, the documented way to keep the "
    "token itself out of the config",
    "AuditConfig.signing_key_file": "the path of the key file, which the gateway reads; "
    "the key itself never appears in the config",
}


def _leaves(annotation: Any) -> Iterator[Any]:
    """The leaf types an annotation admits, through unions, containers and Annotated
    (mapping keys aside: header and map keys are names, their values are the data)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _leaves(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _leaves(arg)
    elif origin is not None and inspect.isclass(origin) and issubclass(origin, Mapping):
        yield from _leaves(typing.get_args(annotation)[1])
    elif origin in (tuple, list, set, frozenset):
        for arg in typing.get_args(annotation):
            if arg is not Ellipsis:
                yield from _leaves(arg)
    elif origin is typing.Literal:
        yield from ()  # a closed set of words is never a secret
    else:
        yield annotation


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in typing.get_args(annotation))
    return origin is not None and inspect.isclass(origin) and issubclass(origin, Mapping)


def config_models(root: type[BaseModel] = GatewayConfig) -> list[type[BaseModel]]:
    """Every model reachable from the gateway's config through its fields."""
    found: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            for leaf in _leaves(field.annotation):
                if inspect.isclass(leaf) and issubclass(leaf, BaseModel):
                    todo.append(leaf)
    return found


def unprotected_fields(root: type[BaseModel] = GatewayConfig) -> list[str]:
    """`Model.field: why` for each field that looks secret-bearing and admits a plain
    string (a secret type is `SecretStr` or `SecretUrl`)."""
    problems = []
    for model in config_models(root):
        for name, field in model.model_fields.items():
            where = f"{model.__name__}.{name}"
            leaves = list(_leaves(field.annotation))
            plain = [leaf for leaf in leaves if leaf is str or leaf is Any]
            if not plain or where in NOT_SECRET:
                continue
            if SECRET_NAME.search(name):
                problems.append(f"{where}: named like a credential")
            elif URL_NAME.search(name):
                problems.append(f"{where}: a URL, which may carry credentials")
            elif HEADERS_NAME.search(name) and _is_mapping(field.annotation):
                problems.append(f"{where}: header values, which may be credentials")
    return problems


def test_every_field_that_looks_secret_has_a_secret_type() -> None:
    """A field added later that holds a key, a password, a token, header values or a
    URL must be `Secret` or `SecretUrl` (or listed in NOT_SECRET with a reason): then
    `env:`, masking in views and redaction from relays and logs follow from its type."""
    assert unprotected_fields() == []


def test_the_guard_catches_a_plain_secret_field() -> None:
    class Upstream(BaseModel):
        password: str
        store_url: str | None = None
        headers: dict[str, str] = {}
        names: tuple[str, ...] = ()
        tokens_per_minute: int = 1

    class Root(BaseModel):
        upstreams: tuple[Upstream, ...] = ()

    assert unprotected_fields(Root) == [
        "Upstream.password: named like a credential",
        "Upstream.store_url: a URL, which may carry credentials",
        "Upstream.headers: header values, which may be credentials",
    ]


def test_the_guard_sees_every_section_of_the_config() -> None:
    names = {model.__name__ for model in config_models()}
    assert {"DeploymentConfig", "KeyConfig", "ReceiptKey", "ToolConfig", "LimitSettings"} <= names


# -- the types -------------------------------------------------------------------------


def test_a_secret_url_is_the_url_and_shows_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REDIS_PASSWORD", "p@ss/w:rd-123456")
    url = SecretUrl.of("redis://seawall:env:TEST_REDIS_PASSWORD@127.0.0.1:6379/0")
    assert url == "redis://seawall:p%40ss%2Fw%3Ard-123456@127.0.0.1:6379/0"
    assert url.masked == "redis://seawall:***@127.0.0.1:6379/0"
    assert repr(url) == repr(url.masked)
    assert url.secrets == {"p@ss/w:rd-123456", "p%40ss%2Fw%3Ard-123456"}
    whole = SecretUrl.of("env:TEST_REDIS_PASSWORD")
    assert whole == "p@ss/w:rd-123456"


@pytest.mark.parametrize(
    ("url", "masked", "secrets"),
    [
        ("memory", "memory", set()),
        ("mock://weather", "mock://weather", set()),
        ("https://api.openai.com/v1", "https://api.openai.com/v1", set()),
        ("redis://:pw-only@host:1/0", "redis://:***@host:1/0", {"pw-only"}),
        ("https://token-as-user@host/v1", "https://***@host/v1", {"token-as-user"}),
        (
            "unix:///run/redis.sock?db=0&password=in-query",
            "unix:///run/redis.sock?db=0&password=***",
            {"in-query"},
        ),
        ("etcd://u:pw@h1:2379,h2:2379/seawall/", "etcd://u:***@h1:2379,h2:2379/seawall/", {"pw"}),
    ],
)
def test_what_a_url_masks(url: str, masked: str, secrets: set[str]) -> None:
    parsed = SecretUrl.of(url)
    assert (parsed, parsed.masked, set(parsed.secrets)) == (url, masked, secrets)
    assert mask_url(url) == masked


def test_secret_fields_accept_env_and_dump_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HEADER_SECRET", "header-secret-from-env-0001")
    monkeypatch.setenv("TEST_STORE_PASSWORD", "store-password-0002")
    config = parse_config(
        {
            "models": [
                {
                    "name": "g",
                    "deployments": [
                        {
                            "id": "d",
                            "model": "m",
                            "api_base": "https://user:api-base-password-0003@llm.example/v1",
                            "api_key": "sk-literal-api-key-0004",
                            "headers": {
                                "x-api-key": "env:TEST_HEADER_SECRET",
                                "anthropic-version": "2023-06-01",
                            },
                        }
                    ],
                }
            ],
            "limits": {"store": "redis://seawall:env:TEST_STORE_PASSWORD@redis.example:6379/0"},
            "tools": [{"name": "t", "endpoint": "https://t:tool-password-0005@tools.example/t"}],
            "receipts": {"keys": [{"id": "k", "secret": "receipt-secret-0006-long-enough"}]},
        },
        "<test>",
    )
    deployment = config.models[0].deployments[0]
    assert deployment.headers["x-api-key"].get_secret_value() == "header-secret-from-env-0001"
    assert secret_values(config) == {
        "header-secret-from-env-0001",
        "2023-06-01",
        "sk-literal-api-key-0004",
        "api-base-password-0003",
        "store-password-0002",
        "tool-password-0005",
        "receipt-secret-0006-long-enough",
    }
    shown = str(config.model_dump(mode="json"))
    for secret in secret_values(config):
        assert secret not in shown
    assert "redis://seawall:***@redis.example:6379/0" in shown
    assert "https://user:***@llm.example/v1" in shown


def test_secret_values_walks_by_value() -> None:
    class Inner(BaseModel):
        value: SecretStr
        url: SecretUrl

    class Outer(BaseModel):
        items: tuple[Inner, ...]
        by_name: dict[str, Inner]

    inner = Inner(value=SecretStr("a-secret-value"), url=SecretUrl.of("redis://:pw-1@h/0"))
    assert secret_values(Outer(items=(inner,), by_name={"x": inner})) == {"a-secret-value", "pw-1"}


# -- redaction -------------------------------------------------------------------------

KEY = "sk-upstream-secret-key-1234567890XYZW"


def test_the_redactor_removes_secrets_and_the_fragments_providers_quote() -> None:
    redactor = Redactor([KEY, "header-value-1234", "short"])
    quoted = f"key {KEY}, masked sk-upstr****XYZW, header header-value-1234, word short"
    logged = redactor.secrets(quoted)
    assert KEY not in logged and "header-value-1234" not in logged and "sk-upstr" not in logged
    assert "short" in logged  # too short to search for: masked in views only
    client = redactor.client(quoted + " at 10.1.2.3:8000")
    assert "XYZW" not in client and "10.1.2.3" not in client
    assert (
        redactor.secrets("redis://u:pw@host:1/0 failed") == "redis://u:[redacted]@host:1/0 failed"
    )


def test_the_log_redaction_scrubs_every_part_of_a_record() -> None:
    logs = LogRedaction()
    redactor = Redactor([KEY])
    logs.add(redactor)
    try:
        raise RuntimeError(f"upstream said {KEY}")
    except RuntimeError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "failed: %s (%d)", (KEY, 3), None
        )
        record.exc_info = sys.exc_info()
    logs.scrub(record)
    text = logging.Formatter().format(record)
    assert KEY not in text and REDACTED in text and "(3)" in text
    clean = logging.LogRecord("seawall", logging.INFO, __file__, 1, "ok %s %d", ("a", 1), None)
    args = clean.args
    logs.scrub(clean)
    assert clean.args is args  # untouched: uvicorn's access formatter reads the tuple
    logs.discard(redactor)
    later = logging.LogRecord("seawall", logging.INFO, __file__, 1, KEY, None, None)
    logs.scrub(later)
    assert later.getMessage() == KEY  # a closed version's secrets are no longer searched


def test_installed_log_redaction_covers_every_logger(caplog: pytest.LogCaptureFixture) -> None:
    LOG_REDACTION.install()
    redactor = Redactor([KEY])
    LOG_REDACTION.add(redactor)
    try:
        with caplog.at_level(logging.INFO):
            for name in ("seawall", "seawall.new.module", "uvicorn.error", "some.library"):
                logging.getLogger(name).warning("from %s: %s", name, KEY)
    finally:
        LOG_REDACTION.discard(redactor)
    assert len(caplog.records) == 4
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
