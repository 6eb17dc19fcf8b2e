"""The gateway's configuration: one YAML file, validated once, immutable afterwards.

`load_config` reports every problem it can find (field path and reason) in one
`ConfigError`, so an operator fixes a broken file in one pass instead of one error
per restart.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field

from audit.config import AuditConfig
from chaos.config import ChaosConfig
from chaos.faults import FaultError
from chaos.grammar import parse
from chaos.targets import Targets, UnknownTarget
from common.config import (
    CrossCheck,
    DocumentError,
    Frozen,
    non_empty,
    secrets_optional,
    validate_document,
)
from gateway.server.config import DEFAULT_HOST, ServerConfig
from limits.config import LimitSettings
from policies import KnownNames, PoliciesConfig, PolicyError, compile_policies
from responses.config import ResponsesConfig
from rollouts.config import RolloutSettings
from routing.config import OPENAI_COMPATIBLE, ModelGroupConfig, RoutingSettings
from routing.providers.litellm_import import litellm_providers
from slo.config import DEFAULT_FREEZE_AT, SloConfig
from tenants.build import build_tenants, tenant_problems
from tenants.config import KeyConfig, TenantConfig
from tenants.known import Known
from tools.config import ReceiptsConfig, ToolConfig, ToolPolicy
from toolservers.config import McpConfig

DEFAULT_CONFIG_RESOURCE = "default_config.yaml"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(DocumentError):
    """A config that cannot be served."""

    kind = "config"


class TelemetryConfig(Frozen):
    #: Wrap upstream transports in OpenTelemetry's httpx instrumentation (client spans
    #: to the global tracer provider, trace context sent upstream); see gateway/telemetry.py.
    opentelemetry: bool = False


class ReloadConfig(Frozen):
    #: How often the config source is re-read whatever its notifications say: the
    #: bound on convergence when a notification is lost (restart-only).
    resync_s: float = Field(10.0, gt=0, le=3600)
    #: Config changes are refused (409 `change_frozen`) while an SLO has consumed more
    #: than this share of its error budget, unless marked as the fix
    #: (`x-seawall-emergency`); 1.0 never freezes (docs/observability.md).
    freeze_at_budget_consumed: float = Field(DEFAULT_FREEZE_AT, gt=0, le=1)
    #: Guarded rollouts: how a new version starts (at once, or as a canary judged
    #: against the serving one), and how a canary is judged (rollouts/config.py).
    rollout: RolloutSettings = RolloutSettings()


class GatewayConfig(Frozen):
    server: ServerConfig = ServerConfig()
    routing: RoutingSettings = RoutingSettings()
    models: Annotated[tuple[ModelGroupConfig, ...], AfterValidator(non_empty)]
    #: The tenant tree (org > team > project); keys belong to tenants (tenants/).
    tenants: tuple[TenantConfig, ...] = ()
    #: CEL rules per tenant, with a shadow or canary candidate set (policies/).
    policies: PoliciesConfig = PoliciesConfig()
    #: Where limit counters live, the default token estimate, named limit classes
    #: (limits on keys and tenants are set there; limits/).
    limits: LimitSettings = LimitSettings()
    #: Stored responses (`previous_response_id`, `GET /v1/responses/{id}`): where they
    #: live, quotas per key, per tenant and in total, how long a continued
    #: conversation may be (responses/config.py).
    responses: ResponsesConfig = ResponsesConfig()
    keys: tuple[KeyConfig, ...] = ()
    tools: tuple[ToolConfig, ...] = ()
    receipts: ReceiptsConfig = ReceiptsConfig()
    tool_policy: ToolPolicy = ToolPolicy()
    chaos: ChaosConfig = ChaosConfig()
    #: Upstream MCP servers behind `/mcp`, sessions, the result ledger, tool-call
    #: limits (toolservers/config.py; docs/mcp.md).
    mcp: McpConfig = McpConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    reload: ReloadConfig = ReloadConfig()
    #: The tamper-evident audit log: where, how it is written and signed, what a
    #: tenant's records hold (audit/config.py; docs/audit.md).
    audit: AuditConfig = AuditConfig()
    #: Service level objectives: availability and latency per model group and tenant,
    #: with error budgets and burn rates (slo/config.py; docs/observability.md).
    slos: tuple[SloConfig, ...] = ()

    def group(self, name: str) -> ModelGroupConfig | None:
        for group in self.models:
            if group.name == name:
                return group
        return None

    @property
    def needs_litellm(self) -> bool:
        return any(d.uses_litellm for g in self.models for d in g.deployments)


# Checks across fields (uniqueness, references, what serving would refuse) read the
# raw document, tolerating every wrong type (pydantic reports those): so they run in
# the same pass as the field checks, and a broken field never hides a broken reference.


def _items(value: object) -> list[tuple[int, dict[str, Any]]]:
    """The mappings in a list, with their positions; anything else is skipped."""
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _strings(items: Iterable[tuple[int, dict[str, Any]]], key: str) -> list[str]:
    return [item[key] for _, item in items if isinstance(item.get(key), str)]


def _groups(data: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return _items(data.get("models"))


def _deployments(data: Mapping[str, Any]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(group name, group index, deployment index, deployment) for every deployment."""
    return [
        (str(group.get("name")), i, j, deployment)
        for i, group in _groups(data)
        for j, deployment in _items(group.get("deployments"))
    ]


def reference_problems(data: Mapping[str, Any]) -> list[str]:
    """Unique names and ids; fallbacks, colors and color faults that name what exists."""
    groups = _groups(data)
    names = _strings(groups, "name")
    deployments = _deployments(data)
    ids = [d["id"] for _, _, _, d in deployments if isinstance(d.get("id"), str)]
    problems = _duplicates("models", "model group name", names)
    problems += _duplicates("models", "deployment id", ids)
    tools = _strings(_items(data.get("tools")), "name")
    problems += _duplicates("tools", "tool name", tools)
    problems += _duplicates("slos", "SLO name", _strings(_items(data.get("slos")), "name"))
    tenants = {"root", *_strings(_items(data.get("tenants")), "id")}
    for i, slo in _items(data.get("slos")):
        group, tenant = slo.get("model_group"), slo.get("tenant")
        if isinstance(group, str) and group not in names:
            problems.append(f"slos[{i}].model_group: unknown model group {group!r}")
        if isinstance(tenant, str) and tenant not in tenants:
            problems.append(f"slos[{i}].tenant: unknown tenant {tenant!r}")
    reload = data.get("reload")
    rollout = reload.get("rollout") if isinstance(reload, dict) else None
    canary_tenants = rollout.get("tenants") if isinstance(rollout, dict) else None
    for i, tenant in enumerate(canary_tenants if isinstance(canary_tenants, list) else []):
        if isinstance(tenant, str) and tenant not in tenants:
            problems.append(f"reload.rollout.tenants[{i}]: unknown tenant {tenant!r}")
    receipts = data.get("receipts")
    receipt_keys = _items(receipts.get("keys")) if isinstance(receipts, dict) else []
    problems += _duplicates("receipts.keys", "receipt key id", _strings(receipt_keys, "id"))
    known = set(names)
    for i, group in groups:
        for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            targets = group.get(field)
            for j, target in enumerate(targets if isinstance(targets, list) else []):
                path = f"models[{i}].{field}[{j}]"
                if target == group.get("name"):
                    problems.append(f"{path}: a group cannot fall back to itself")
                elif isinstance(target, str) and target not in known:
                    problems.append(f"{path}: unknown model group {target!r}")
    chaos = data.get("chaos")
    colors = chaos.get("colors") if isinstance(chaos, dict) else None
    fault_targets = Targets(
        {d["id"]: g for g, _, _, d in deployments if "id" in d}, tools, mcp_servers(data)
    )
    for color, settings in colors.items() if isinstance(colors, dict) else ():
        if not isinstance(settings, dict):
            continue
        members = settings.get("deployments")
        for deployment in members if isinstance(members, list) else []:
            if isinstance(deployment, str) and deployment not in ids:
                problems.append(
                    f"chaos.colors.{color}.deployments: unknown deployment {deployment!r}"
                )
        faults = settings.get("faults")
        try:
            specs = parse(faults) if isinstance(faults, str) and faults else []
        except FaultError:
            specs = []  # a malformed fault string is the field check's to report
        for spec in specs:
            try:
                fault_targets.check(spec)
            except UnknownTarget as exc:
                problems.append(f"chaos.colors.{color}.faults: {exc}")
    return problems


def mcp_servers(data: Mapping[str, Any]) -> list[str]:
    """The MCP server names of a raw document (their tools' namespaces)."""
    mcp = data.get("mcp")
    return _strings(_items(mcp.get("servers")), "name") if isinstance(mcp, dict) else []


def serving_problems(data: Mapping[str, Any], host: str | None) -> list[str]:
    """Problems only serving would hit, so `check-config` reports them too: a key-less
    gateway on a non-loopback address (`host`, or `server.host`), and litellm provider
    names litellm does not know (read from litellm's source, not imported)."""
    problems: list[str] = []
    server = data.get("server")
    if host is None:
        configured = server.get("host") if isinstance(server, dict) else None
        host = configured if isinstance(configured, str) else DEFAULT_HOST
    keys = data.get("keys")
    if not keys and not is_loopback(host):
        problems.append(
            f"server.host: refusing to serve on {host}: the config has no keys, so the "
            "gateway would be open to anyone who can reach it. Bind to 127.0.0.1, or add "
            "`keys:`"
        )
    translated = [
        (i, j, d["provider"])
        for _, i, j, d in _deployments(data)
        if isinstance(d.get("provider"), str) and d["provider"] not in OPENAI_COMPATIBLE
    ]
    if translated:
        known = litellm_providers()
        for i, j, provider in translated:
            if provider not in known:
                problems.append(
                    f"models[{i}].deployments[{j}].provider: unknown provider {provider!r} "
                    "(neither OpenAI-compatible nor one litellm translates)"
                )
    return problems


def _duplicates(path: str, what: str, values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for value in values:
        if value in seen:
            problems.append(f"{path}: duplicate {what} {value!r}")
        seen.add(value)
    return problems


def known_names(config: GatewayConfig) -> Known:
    """What tenants' allow-lists may name: model groups, tools (registered ones, and
    `server__tool` of the MCP servers), deployments."""
    groups = {g.name: [d.id for d in g.deployments] for g in config.models}
    servers = [s.name for s in config.mcp.servers]
    return Known.of(groups, [t.name for t in config.tools], servers)


#: Checks on validated sections: each runs when the sections it reads are valid.
def policy_names(config: GatewayConfig) -> KnownNames:
    """What policy rules may name: tenants with their chains, deployments, limit classes."""
    tree = build_tenants(config.tenants, config.keys, known_names(config))
    chains = {t.id: t.chain for t in tree}
    deployments = [d.id for g in config.models for d in g.deployments]
    return KnownNames.of(chains, deployments, limit_class_names(config))


def limit_class_names(config: GatewayConfig) -> list[str]:
    return list(config.limits.classes)


def compile_problems(config: GatewayConfig) -> list[str]:
    if not config.policies.rules and config.policies.candidate is None:
        return []
    if tenant_problems(config.tenants, config.keys, known_names(config)):
        return []  # the tenants' own problems are reported; rules need a valid tree
    try:
        compile_policies(config.policies, policy_names(config))
    except PolicyError as exc:
        return list(exc.problems)
    return []


TYPED_CHECKS: tuple[CrossCheck[GatewayConfig], ...] = (
    CrossCheck(
        frozenset({"tenants", "keys", "models", "tools", "mcp"}),
        lambda c: tenant_problems(c.tenants, c.keys, known_names(c)),
    ),
    CrossCheck(
        frozenset({"tenants", "keys", "models", "tools", "mcp", "policies"}), compile_problems
    ),
)


def parse_config(data: object, source: str, serve_on: str | None = None) -> GatewayConfig:
    """`data` validated into a config, every problem reported in one pass. With
    `serve_on` (the address it would be served on; "" for `server.host`), what
    serving it would refuse is part of the same pass."""
    raw_checks: list[Callable[[Mapping[str, Any]], list[str]]] = [reference_problems]
    checks = TYPED_CHECKS
    if serve_on is not None:
        raw_checks.append(lambda d: serving_problems(d, serve_on or None))
        checks = (*checks, CrossCheck(frozenset({"audit"}), audit_serving_problems))
    return validate_document(GatewayConfig, data, checks, ConfigError, source, raw_checks)


def audit_serving_problems(config: GatewayConfig) -> list[str]:
    """What starting the audit log would fail on: a signing key that cannot be read or
    is not an Ed25519 private key, a directory that cannot be created or written.
    Nothing is created. With `--skip-env` (a machine that need not hold the config's
    secrets, nor its key files and directories) nothing is checked."""
    audit = config.audit
    if not audit.enabled or secrets_optional():
        return []
    from gateway.audit_log import load_signer

    problems = []
    field = "audit.signing_key" if audit.signing_key is not None else "audit.signing_key_file"
    try:
        load_signer(audit)
    except OSError as exc:
        problems.append(f"{field}: cannot read {audit.signing_key_file}: {exc.strerror}")
    except ValueError:
        problems.append(f"{field}: not an Ed25519 private key in PEM (seawall audit keygen)")
    existing = Path(audit.directory).absolute()
    while not existing.exists():  # the nearest ancestor that exists must take the rest
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"audit.directory: cannot create or write {audit.directory}")
    return problems


def load_config(path: str | Path | None = None, serve_on: str | None = None) -> GatewayConfig:
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
    return parse_config(data, source, serve_on)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
