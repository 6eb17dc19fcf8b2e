"""Secret-bearing config values: their types, their masked form, and every secret of a config.

A credential in the config has a secret type, and everything else follows from the
type, never from the field's name or place:

- `Secret` (common/config.py) holds a value that is a credential as a whole: an API
  key, a header value, an HMAC key. pydantic's `SecretStr`: `str()` and `repr()`
  show `**********`, and so does the config's JSON dump, which is what every view
  (`GET /admin/config`) is built from.
- `SecretUrl` is a URL that may carry credentials: a password in its userinfo
  (`redis://user:pass@host`) or a credential-named query parameter (`?password=`).
  Code uses it as the URL it is (it is a `str`: the Redis client, httpx and the pools
  read it unchanged); its `repr()` and its JSON dump show the URL with those parts
  masked (`redis://user:***@host`).

Both accept `env:NAME` for the whole value; a `SecretUrl` also for its password alone
(`redis://user:env:REDIS_PASSWORD@host:6379/0`) and for a credential query parameter,
so the rest of the URL stays readable in the file.

`secret_values(config)` walks a config by value and returns every secret in it: a
field added later with a secret type is found without anyone listing it. A Runtime
builds its redactor from it (common/redact.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any
from urllib.parse import quote, unquote

from pydantic import AfterValidator, BaseModel, GetCoreSchemaHandler, SecretStr
from pydantic_core import core_schema

from common.config import ENV_PREFIX, resolve_secret

#: What stands for a credential inside a masked URL.
MASK = "***"
#: Query parameter names whose values are credentials (`?password=`, `?api_key=`...).
CREDENTIAL_PARAM = re.compile(
    r"(?i)^(?:.*(?:pass(?:word|wd)?|secret|token|key|credential|signature|sig|auth).*)$"
)
#: What `resolve_secret` puts in place of an unset variable under `--skip-env`.
UNSET_PREFIX = "<unset "


class _Parts:
    """A URL cut where its credentials may be: what comes before the userinfo, the
    userinfo, the rest of the authority, the path, and the query and fragment."""

    def __init__(self, text: str) -> None:
        scheme, sep, rest = text.partition("://")
        self.ok = bool(sep)
        self.head = scheme + sep
        end = len(rest)
        for stop in "/?#":
            at = rest.find(stop)
            if at >= 0:
                end = min(end, at)
        authority, self.tail = rest[:end], rest[end:]
        self.userinfo, at_sign, self.host = authority.rpartition("@")
        self.has_userinfo = bool(at_sign)


def _credentials(text: str, resolve: bool) -> tuple[str, str, frozenset[str]]:
    """(the URL with `env:` credentials resolved, the URL masked, its secrets)."""
    parts = _Parts(text)
    if not parts.ok:
        return text, text, frozenset()
    secrets: set[str] = set()

    def secret(value: str) -> str:
        """The credential as it goes into the URL (resolved, percent-encoded)."""
        if resolve and value.startswith(ENV_PREFIX):
            value = quote(str(resolve_secret(value)), safe="")
        if value:
            secrets.update({value, unquote(value)})
        return value

    userinfo = masked_userinfo = ""
    if parts.has_userinfo:
        user, colon, password = parts.userinfo.partition(":")
        if colon:
            userinfo = f"{user}:{secret(password)}@"
            masked_userinfo = f"{user}:{MASK}@"
        else:  # a token as the user name (`https://TOKEN@host`)
            userinfo = f"{secret(user)}@"
            masked_userinfo = f"{MASK}@"
    path, question, query = parts.tail.partition("?")
    query, hash_sign, fragment = query.partition("#")
    params, masked_params = [], []
    for param in query.split("&") if question else ():
        name, equals, value = param.partition("=")
        if equals and value and CREDENTIAL_PARAM.match(name):
            params.append(f"{name}={secret(value)}")
            masked_params.append(f"{name}={MASK}")
        else:
            params.append(param)
            masked_params.append(param)
    after = f"{hash_sign}{fragment}"
    url = f"{parts.head}{userinfo}{parts.host}{path}{question}{'&'.join(params)}{after}"
    masked = (
        f"{parts.head}{masked_userinfo}{parts.host}{path}{question}{'&'.join(masked_params)}{after}"
    )
    return url, masked, frozenset(s for s in secrets if s)


def mask_url(text: str) -> str:
    """`text` (a URL, or anything else) with the credentials a URL may carry masked:
    how a URL that did not come through the config (`--config etcd://...`) is shown."""
    return _credentials(text, resolve=False)[1]


def source_secrets(spec: str | None) -> frozenset[str]:
    """The credentials in a config source spec (`etcd://user:pass@...`, or `env:NAME`
    naming one); none when it has none or cannot be resolved (then it serves nothing)."""
    if not spec:
        return frozenset()
    try:
        return SecretUrl.of(spec.strip()).secrets
    except ValueError:
        return frozenset()


class SecretUrl(str):
    """A URL that may carry credentials. It *is* the URL, credentials included, so code
    connects with it like with any string; `masked` is how it is shown (its `repr`,
    and its JSON dump in every config view), `secrets` what must never be shown.

    Built by `SecretUrl.of` (or by pydantic, for a field of this type): `env:NAME` for
    the whole URL, or in place of its password or of a credential query parameter."""

    masked: str
    secrets: frozenset[str]
    #: `env:` references left unresolved (`check-config --skip-env`): not a URL to check.
    unresolved: bool

    @classmethod
    def of(cls, value: str) -> SecretUrl:
        text = str(resolve_secret(value))
        url, masked, secrets = _credentials(text, resolve=True)
        instance = cls(url)
        instance.masked = masked
        instance.secrets = secrets
        instance.unresolved = text.startswith(UNSET_PREFIX) or UNSET_PREFIX in unquote(url)
        return instance

    def __repr__(self) -> str:
        return repr(self.masked)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [core_schema.str_schema(), core_schema.no_info_plain_validator_function(cls.of)],
            serialization=core_schema.plain_serializer_function_ser_schema(
                _masked, when_used="json"
            ),
        )


def _masked(value: object) -> str:
    return value.masked if isinstance(value, SecretUrl) else mask_url(str(value))


def unresolved(value: object) -> bool:
    """Whether `value` is a `SecretUrl` whose `env:` reference is left unresolved
    (`check-config --skip-env`): a field validator checking its form lets it pass."""
    return bool(getattr(value, "unresolved", False))


def secret_values(value: object) -> frozenset[str]:
    """Every secret in a config (a model, or anything holding models): the value of
    each `Secret` and the credentials of each `SecretUrl`, wherever they are."""
    return frozenset(_walk(value))


def _walk(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretUrl):
        yield from value.secrets
    elif isinstance(value, str):
        return
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _walk(item)


def revealed(value: object) -> Any:
    """A model's python dump (`model_dump()`) as plain data with every secret's real
    value: what the config's documents said, for a config version built from a config
    object rather than from documents (its documents are what a rollback applies, so
    a masked `**********` must never stand in for a credential there)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): revealed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [revealed(item) for item in value]
    return value


#: What a store setting may name besides `memory`: one Redis (TLS, or a Unix socket).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def store_url(value: SecretUrl) -> SecretUrl:
    """A store setting's value (`limits.store`, `responses.store`, `mcp.ledger.store`):
    `memory` (this process) or a Redis URL. The error does not repeat the value: it
    may hold a password."""
    if unresolved(value) or value == "memory" or value.startswith(REDIS_SCHEMES):
        return value
    raise ValueError("must be 'memory' or a redis:// (rediss://, unix://) URL")


#: A `SecretUrl` that is `memory` or a Redis URL.
StoreUrl = Annotated[SecretUrl, AfterValidator(store_url)]
