"""The gateway's configuration: one YAML file, validated once, immutable afterwards.

`load_config` reports every problem it can find (field path and reason) in one
`ConfigError`, so an operator fixes a broken file in one pass instead of one error
per restart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, field_validator, model_validator

from chaos.config import ChaosConfig
from chaos.grammar import parse
from chaos.targets import Targets, UnknownTarget
from common.config import (
    DocumentError,
    Frozen,
    Identifier,
    Secret,
    non_empty,
    validate_document,
)
from gateway.server.frontdoor import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    FrontDoorLimits,
)
from routing.config import ModelGroupConfig, RoutingSettings
from tenants.roles import RoleName
from tools.config import ReceiptsConfig, ToolConfig, ToolPolicy

DEFAULT_CONFIG_RESOURCE = "default_config.yaml"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

#: Request bodies larger than this are refused with 413 before they are parsed.
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64


class ConfigError(DocumentError):
    """A config that cannot be served."""

    kind = "config"


class ServerConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    #: Request bodies nested deeper than this are refused with 400. At most 250:
    #: the body is re-serialized for the provider, and orjson writes at most 254 levels.
    max_json_depth: int = Field(DEFAULT_MAX_JSON_DEPTH, ge=4, le=250)
    # -- the front door (gateway/server/frontdoor.py has the why of each default) --
    #: Request line plus headers; more is a 431.
    max_header_bytes: int = Field(DEFAULT_MAX_HEADER_BYTES, ge=1024, le=1024 * 1024)
    max_headers: int = Field(DEFAULT_MAX_HEADERS, ge=8, le=1000)
    #: From a request's first byte (or the connection's opening) to its last header.
    header_timeout_s: float = Field(DEFAULT_HEADER_TIMEOUT_S, gt=0, le=300)
    #: The longest silence while a body is being received.
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, gt=0, le=300)
    keepalive_timeout_s: float = Field(DEFAULT_KEEPALIVE_TIMEOUT_S, gt=0, le=3600)
    #: Open connections per worker process.
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1, le=1_000_000)
    #: After SIGTERM: /readyz answers 503 at once, new requests are still served this
    #: long (so a load balancer notices), then the listener closes.
    drain_s: float = Field(5.0, ge=0, le=600)
    #: Then in-flight requests get this long to finish; streams still open after it
    #: end with a `stream_interrupted` error event, other requests with a 503.
    shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    #: Relay upstream failure details (hosts, IPs, provider wording) to clients
    #: verbatim. Off: clients get the deployment id and the failure class only.
    expose_upstream_errors: bool = False

    def front_door(self) -> FrontDoorLimits:
        return FrontDoorLimits(
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            keepalive_timeout_s=self.keepalive_timeout_s,
            max_connections=self.max_connections,
        )


class TelemetryConfig(Frozen):
    #: Wrap upstream transports in OpenTelemetry's httpx instrumentation (client spans
    #: to the global tracer provider, trace context sent upstream); see gateway/telemetry.py.
    opentelemetry: bool = False


class KeyConfig(Frozen):
    """An API key: stored as the sha256 of the bearer token, or an `env:` reference."""

    id: Identifier
    key_sha256: str | None = None
    key: Secret | None = None
    #: From the closed set in tenants/roles.py; a misspelt role is a config error.
    roles: tuple[RoleName, ...] = ("user",)

    @field_validator("key_sha256")
    @classmethod
    def _check_hex(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.lower()
            if not SHA256_HEX.match(value):
                raise ValueError("must be 64 hexadecimal characters (sha256 of the token)")
        return value

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> KeyConfig:
        if (self.key_sha256 is None) == (self.key is None):
            raise ValueError("set exactly one of key_sha256 or key")
        return self

    @property
    def digest(self) -> str:
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()


class GatewayConfig(Frozen):
    server: ServerConfig = ServerConfig()
    routing: RoutingSettings = RoutingSettings()
    models: Annotated[tuple[ModelGroupConfig, ...], AfterValidator(non_empty)]
    keys: tuple[KeyConfig, ...] = ()
    tools: tuple[ToolConfig, ...] = ()
    receipts: ReceiptsConfig = ReceiptsConfig()
    tool_policy: ToolPolicy = ToolPolicy()
    chaos: ChaosConfig = ChaosConfig()
    telemetry: TelemetryConfig = TelemetryConfig()

    def group(self, name: str) -> ModelGroupConfig | None:
        for group in self.models:
            if group.name == name:
                return group
        return None

    @property
    def needs_litellm(self) -> bool:
        return any(d.uses_litellm for g in self.models for d in g.deployments)


def cross_reference_problems(config: GatewayConfig) -> list[str]:
    """Problems pydantic cannot see field by field: uniqueness and references."""
    problems: list[str] = []
    names = [g.name for g in config.models]
    problems += _duplicates("models", "model group name", names)
    ids = [d.id for g in config.models for d in g.deployments]
    problems += _duplicates("models", "deployment id", ids)
    problems += _duplicates("keys", "key id", [k.id for k in config.keys])
    problems += _duplicates("tools", "tool name", [t.name for t in config.tools])
    problems += _duplicates("receipts.keys", "receipt key id", [k.id for k in config.receipts.keys])
    known = set(names)
    targets = Targets(
        {d.id: g.name for g in config.models for d in g.deployments}, [t.name for t in config.tools]
    )
    for color, settings in config.chaos.colors.items():
        for deployment in settings.deployments:
            if deployment not in ids:
                problems.append(
                    f"chaos.colors.{color}.deployments: unknown deployment {deployment!r}"
                )
        for spec in parse(settings.faults) if settings.faults else ():
            try:
                targets.check(spec)
            except UnknownTarget as exc:
                problems.append(f"chaos.colors.{color}.faults: {exc}")
    for i, group in enumerate(config.models):
        for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for j, target in enumerate(getattr(group, field)):
                path = f"models[{i}].{field}[{j}]"
                if target == group.name:
                    problems.append(f"{path}: a group cannot fall back to itself")
                elif target not in known:
                    problems.append(f"{path}: unknown model group {target!r}")
    return problems


def _duplicates(path: str, what: str, values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for value in values:
        if value in seen:
            problems.append(f"{path}: duplicate {what} {value!r}")
        seen.add(value)
    return problems


def parse_config(data: object, source: str) -> GatewayConfig:
    return validate_document(GatewayConfig, data, cross_reference_problems, ConfigError, source)


def load_config(path: str | Path | None = None) -> GatewayConfig:
    """Load `path`, or the embedded default (mock providers, no keys) when None."""
    if path is None:
        text = resources.files("gateway").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
        source = "<embedded default>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML syntax error: {exc}"]) from None
    return parse_config(data, source)


def serving_problems(config: GatewayConfig, host: str) -> list[str]:
    """Problems only serving would hit, so `check-config` reports them too: a key-less
    gateway on a non-loopback address, and litellm provider names litellm does not
    know (checked only when such deployments exist: it imports litellm, seconds)."""
    problems: list[str] = []
    if not config.keys and not is_loopback(host):
        problems.append(
            f"server.host: refusing to serve on {host}: the config has no keys, so the "
            "gateway would be open to anyone who can reach it. Bind to 127.0.0.1, or add "
            "`keys:`"
        )
    if config.needs_litellm:
        from routing.providers.litellm import translates

        for i, group in enumerate(config.models):
            for j, deployment in enumerate(group.deployments):
                if deployment.uses_litellm and not translates(deployment.provider):
                    problems.append(
                        f"models[{i}].deployments[{j}].provider: unknown provider "
                        f"{deployment.provider!r} (neither OpenAI-compatible nor one litellm "
                        "translates)"
                    )
    return problems


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
