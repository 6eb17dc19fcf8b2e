"""One config version, ready to serve: `build_runtime(config, state, version)`.

A `Runtime` holds everything derived from one config: the router and its groups,
the providers, the tool registry, the keys, the chaos rules, and the pipelines that
compose them. It is never changed after it is built; a reload builds another one
(gateway/reload.py) and swaps it in with one assignment. What must outlive a config
version (breakers, pools, counters...) is borrowed from the `State`, never owned.

A request takes the runtime that is current when it starts and keeps it to its last
byte (`InFlight` counts them), so no request ever mixes two versions; a replaced
runtime is closed once its last request is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import httpx

from audit.config import effective_policies
from chaos.engine import ChaosEngine
from chaos.transport import ChaosTransport
from common.redact import LOG_REDACTION, Redactor
from common.secrets import secret_values
from gateway.audit_log import load_signer
from gateway.config import GatewayConfig, known_names, policy_names
from gateway.errors import UpstreamErrors
from gateway.mcp.governance import GatewayGovernance
from gateway.pipeline import CompletionHook, InFlight, Pipeline, Stage
from gateway.slos import history
from gateway.stages.audit import AuditTrail, RecordRequest
from gateway.stages.authenticate import Authenticate
from gateway.stages.body import ParseJSON, ReadBody
from gateway.stages.callids import MintCallIds
from gateway.stages.chaos import Chaos, ForgeToolResults
from gateway.stages.deadline import Deadline
from gateway.stages.entitlements import EnforceCaps, ToolAllowed
from gateway.stages.fork import ByUpstreamApi
from gateway.stages.guards import PromptGuard
from gateway.stages.invoke import InvokeTool
from gateway.stages.limits import AdmitLimits, SettleLimits
from gateway.stages.passthrough import ContinueItems, PassThrough, RelayResponses
from gateway.stages.policy import PolicyGate
from gateway.stages.render import Render
from gateway.stages.responses import (
    ContinueConversation,
    ReleaseConversation,
    RenderResponses,
    TranslateResponses,
)
from gateway.stages.route import Forward, ResolveModel
from gateway.stages.slo import ObserveSlos
from gateway.stages.tools import VerifyToolCalls, VerifyToolResults
from gateway.stages.validate import ValidateChat, ValidateEmbeddings
from gateway.state import State
from gateway.telemetry import server_tracer, traced
from gateway.versions import ConfigVersion
from limits.prices import FREE, price_of
from policies import compile_policies
from responses.conversation import Bounds
from routing.config import DeploymentConfig
from routing.context_windows import prompt_limits
from routing.health import Identity as UpstreamIdentity
from routing.router import Router, build_router
from routing.tokens import load_encoding
from routing.turn_counts import TurnCounts
from routing.upstreams import SharedTransport, Upstreams
from tenants.build import build_tenants
from tools.endpoints import ToolEndpoints
from tools.invoke import ToolInvoker
from tools.receipts import Receipts
from tools.registry import ToolRegistry
from tools.results import ResultChecker
from toolservers.service import McpService

log = logging.getLogger("seawall")


class TransportLayers:
    """What wraps each upstream transport, innermost first: chaos at the wire, then
    tracing, so a span records an injected fault as the failure the router sees.
    Falsy when nothing does: then no transport is wrapped, not even in a pass-through."""

    def __init__(self, config: GatewayConfig) -> None:
        self.chaos = config.chaos.enabled
        self.tracing = config.telemetry.opentelemetry

    def __bool__(self) -> bool:
        return self.chaos or self.tracing

    def wrap(self, transport: httpx.AsyncBaseTransport, target: str) -> httpx.AsyncBaseTransport:
        if self.chaos:
            transport = ChaosTransport(transport)
        if self.tracing:
            transport = traced(transport, target)
        return transport

    def wrap_deployment(
        self, transport: httpx.AsyncBaseTransport, config: DeploymentConfig
    ) -> httpx.AsyncBaseTransport:
        return self.wrap(transport, config.id)


def counting_models(config: GatewayConfig, limits: Mapping[str, int | None]) -> set[str]:
    """The models whose tokenizers this config may count prompts with: mock
    deployments (they count usage), and a group's first deployment's model where the
    prompt guard has a limit (`limits`, by group) or any level limits tokens or spend.
    A config that never counts loads no tokenizer (~50 MB a worker)."""
    levels = [
        *(tenant.limits for tenant in config.tenants),
        *(key.limits for key in config.keys),
        *config.limits.classes.values(),
    ]
    token_limits = any(level is not None and level.counts_tokens for level in levels)
    models: set[str] = set()
    for group in config.models:
        if token_limits or limits.get(group.name) is not None:
            models.add(group.deployments[0].model)
        models.update(d.model for d in group.deployments if d.provider == "mock")
    return models


class Compiled:
    """The parts of a runtime that cost real time to build (schemas compiled, files
    read) and need nothing from the event loop: built in a worker thread by a
    reload, so serving never stalls on them."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tool_registry = ToolRegistry(config.tools)
        self.prompt_limits = prompt_limits(config.models)
        self.tenants = build_tenants(config.tenants, config.keys, known_names(config))
        self.policies = compile_policies(config.policies, policy_names(config))
        #: Each tenant's audit settings, its chain applied (what its records hold,
        #: what a full writer queue does to its requests).
        self.audit_policies = effective_policies(
            config.audit.defaults,
            {tenant.id: tenant.chain for tenant in self.tenants},
            {tenant.id: tenant.audit for tenant in config.tenants},
        )


class Runtime:
    def __init__(
        self,
        compiled: Compiled,
        state: State,
        version: ConfigVersion,
        completions: Sequence[CompletionHook] = (),
    ) -> None:
        config = compiled.config
        self.config = config
        self.version = version
        self.state = state
        deployments = [d for g in config.models for d in g.deployments]
        self.prices = {d.id: price_of(d) for d in deployments}
        #: The dearest deployment of each group: what a reservation is priced at.
        self.group_prices = {
            g.name: max(
                (p for d in g.deployments if (p := self.prices[d.id]) is not None),
                key=lambda p: p.input + p.output,
                default=FREE,
            )
            for g in config.models
        }
        #: Called after the last byte of every response: limits settlement, then the
        #: given ones (metrics, and later audit and SLOs).
        settle: CompletionHook = SettleLimits(state.limiter, self.prices)
        self.completions: tuple[CompletionHook, ...] = (settle, *completions)
        self.audit_policies = compiled.audit_policies
        self.in_flight = InFlight()
        window = config.routing.stats_window_seconds
        #: The health entries this version uses (kept in State while it serves).
        self.identities = {UpstreamIdentity.of(d, window) for d in deployments}
        self.chaos = ChaosEngine(
            config.chaos,
            {d.id: g.name for g in config.models for d in g.deployments},
            state.clock,
            tools=[t.name for t in config.tools],
            schedule=state.chaos_schedule,
            injected=state.chaos_injected,
            namespaces=[s.name for s in config.mcp.servers],
        )
        layers = TransportLayers(config)
        self.upstreams = Upstreams(
            deployments, layers.wrap_deployment if layers else None, state.pools
        )
        self.router: Router = build_router(
            config.models,
            self.upstreams.providers,
            config.routing,
            state.clock,
            health=state.health,
            budget=state.budget.with_settings(config.routing.retry_budget),
            fallbacks=state.fallbacks,
            hedges=state.hedges,
        )
        self.tenants = compiled.tenants
        self.policies = compiled.policies
        self.tool_registry = compiled.tool_registry
        self.receipts = Receipts(config.receipts)
        self.tool_transport = layers.wrap(
            ToolEndpoints(SharedTransport(state.tool_pool)), "tool-endpoints"
        )
        self.invoker = ToolInvoker(self.tool_registry, self.receipts, self.tool_transport)
        #: `/mcp` of this version: built by `start`, once the upstream servers of its
        #: config are synced in State's pool (that is async); None until then.
        self.mcp: McpService | None = None
        self.mcp_governance = GatewayGovernance(
            self.policies, state.limiter, config.mcp.limits, config.limits, state.events
        )
        self.prompt_limits = compiled.prompt_limits
        #: Every secret of this config (common/secrets.py), prepared once: for what
        #: error paths relay to clients, and for every log record while this version
        #: lives (registered until `close`).
        self.redactor = Redactor(secret_values(config))
        LOG_REDACTION.add(self.redactor)
        audit = state.audit
        #: With the audit log on: the stage after authentication of every pipeline,
        #: and the hook that records each finished request (gateway/stages/audit.py).
        self.audit_trail = None if audit is None else AuditTrail(audit, self.audit_policies)
        if audit is not None:
            record = RecordRequest(
                audit,
                self.audit_policies,
                version.id,
                self.prices,
                self.redactor,
                telemetry=config.telemetry.opentelemetry,
            )
            self.completions = (*self.completions, record)
        if config.slos:
            self.completions = (*self.completions, ObserveSlos(state.slos, version.id))
        self.chat, self.responses, self.embeddings, self.tools = self._pipelines()

    def _pipelines(self) -> tuple[Pipeline, Pipeline, Pipeline, Pipeline]:
        config, state = self.config, self.state
        errors = UpstreamErrors(config.server.expose_upstream_errors, self.redactor)
        events = state.events
        max_bytes = config.server.max_request_bytes
        parse = ParseJSON(config.server.max_json_depth, events)

        tracer = server_tracer(config.telemetry.opentelemetry)

        def pipeline(
            endpoint: str, stages: list[Stage], after: Sequence[CompletionHook] = ()
        ) -> Pipeline:
            if self.audit_trail is not None:  # right after `Authenticate`
                stages = [stages[0], self.audit_trail, *stages[1:]]
            return Pipeline(
                endpoint,
                stages,
                drain=state.drain,
                ids=state.ids,
                in_flight=self.in_flight,
                version=self.version.id,
                completions=(*self.completions, *after),
                tracer=tracer,
            )

        # Earlier turns' token counts, per caller: the guard and the limits count
        # the same conversations.
        turns = TurnCounts()
        limits = AdmitLimits(state.limiter, config.limits, self.group_prices, turns)
        # Everything a chat request goes through once it is a chat request: the
        # Responses API joins here, translated.
        admission: list[Stage] = [
            EnforceCaps(),
            ResolveModel(self.router),
            PolicyGate(self.policies, self.router, events),
            Chaos(self.chaos, events),
        ]
        checks: list[Stage] = [
            ForgeToolResults(self.tool_registry),
            VerifyToolResults(
                ResultChecker(self.tool_registry, self.receipts, config.tool_policy),
                events,
                mcp=lambda: self.mcp,
            ),
            PromptGuard(self.router, self.prompt_limits, events, turns),
        ]
        upstream: list[Stage] = [
            Deadline(self.router),
            Forward(
                self.router,
                errors,
                VerifyToolCalls(self.tool_registry, config.tool_policy, events),
            ),
            MintCallIds(),
        ]
        chat = pipeline(
            "chat",
            [
                Authenticate(self.tenants, "user"),
                ReadBody(max_bytes, events),
                parse,
                ValidateChat(),
                *admission,
                *checks,
                limits,
                *upstream,
                Render(errors, state.drain),
            ],
        )
        store, bounds = state.responses_store, Bounds.of(config.responses)
        # A continued conversation is read and rebuilt only once the request is
        # admitted (its size counted as prompt by policies and limits); the checks
        # that need the whole conversation run after it (DESIGN.md 10b).
        # Two ways by what the group's upstreams speak (gateway/stages/fork.py):
        # translated to Chat Completions, or passed through to a Responses upstream.
        translated: list[Stage] = [
            TranslateResponses(store, bounds),
            *admission,
            limits,
            ContinueConversation(store, bounds),
            *checks,
            *upstream,
            RenderResponses(store, state.response_puts, errors, state.drain),
        ]
        passed_through: list[Stage] = [
            PassThrough(store, bounds),
            *admission,
            limits,
            ContinueItems(store, bounds),
            Deadline(self.router),
            Forward(self.router, errors, endpoint="responses"),
            RelayResponses(store, state.response_puts, errors, state.drain),
        ]
        responses = pipeline(
            "responses",
            [
                Authenticate(self.tenants, "user"),
                ReadBody(max_bytes, events),
                parse,
                ByUpstreamApi(self.router, {"chat": translated, "responses": passed_through}),
            ],
            after=[ReleaseConversation()],
        )
        embeddings = pipeline(
            "embeddings",
            [
                Authenticate(self.tenants, "user"),
                ReadBody(max_bytes, events),
                parse,
                ValidateEmbeddings(),
                ResolveModel(self.router),
                PolicyGate(self.policies, self.router, events),
                Chaos(self.chaos, events),
                limits,
                Deadline(self.router),
                Forward(self.router, errors),
                Render(errors, state.drain),
            ],
        )
        tools = pipeline(
            "tools",
            [
                Authenticate(self.tenants, "tools"),
                ToolAllowed(),
                ReadBody(max_bytes, events),
                parse,
                Chaos(self.chaos, events),
                InvokeTool(self.invoker, events, self.redactor),
            ],
        )
        return chat, responses, embeddings, tools

    async def start(self) -> None:
        """Opens what this version needs before it may serve (pools are shared: one
        an earlier version started is already open)."""
        # The tokenizers it may count with, loaded before it serves: loading one holds
        # the GIL for 0.3-1 s even in a worker thread, so on first use it would stall
        # every request in flight (a limit store's calls then time out behind it).
        for model in counting_models(self.config, self.prompt_limits):
            await load_encoding(model)
        await self.upstreams.start()

    async def adopt(self) -> None:
        """Makes this version the process's: what it sets in State for every version
        (the audit signing key, the tracked SLOs, the MCP upstream servers and `/mcp`).
        Apart from `start` because a canary serves beside the current version without
        taking these over: it adopts them only when promoted (gateway/rollouts.py)."""
        if self.state.audit is not None:
            self.state.audit.use_signer(await asyncio.to_thread(load_signer, self.config.audit))
        await self._adopt_slos()
        state = self.state
        upstreams = await state.mcp_pool.sync(self.config.mcp)
        self.mcp = McpService(
            self.config.mcp,
            upstreams,
            self.receipts,
            sessions=state.mcp_sessions,
            ledger=state.mcp_ledger,
            governance=self.mcp_governance,
        )

    async def _adopt_slos(self) -> None:
        """This version's SLOs become the tracked ones; a new or changed SLO is
        refilled from the audit log when it is on (read off the loop)."""
        slos, state, audit = self.config.slos, self.state, self.config.audit
        past = None
        if state.slos.fresh(slos) and state.audit is not None:
            past = await asyncio.to_thread(history, audit, slos)
        state.slos.reconfigure(slos, past)

    async def close(self) -> None:
        """Releases what this version holds; shared pools close with their last user."""
        await self.upstreams.aclose()
        LOG_REDACTION.discard(self.redactor)

    async def retire(self) -> None:
        """Closes this version once its last request is done."""
        await self.in_flight.idle()
        await self.close()


def build_runtime(
    config: GatewayConfig,
    state: State,
    version: ConfigVersion,
    completions: Sequence[CompletionHook] = (),
) -> Runtime:
    """A runtime for `config` on `state`. Pure apart from borrowing State: nothing
    starts and nothing serves until `start()` and the swap."""
    return Runtime(Compiled(config), state, version, completions)


async def compile_off_loop(config: GatewayConfig) -> Compiled:
    return await asyncio.to_thread(Compiled, config)
