"""What lives as long as the process, whatever config version is serving.

A config reload builds a new `Runtime` (gateway/runtime.py) from the new config and
this `State`; everything here carries over from one version to the next:

- what was learned about upstreams: statistics and circuit breakers, keyed by
  deployment identity (routing/health.py), so an open breaker stays open;
- connection pools by origin (routing/upstreams.py), so warm connections stay warm;
- the retry budget, fallback and hedge counts;
- the chaos schedule (an outage scheduled through the admin API does not end
  because the config changed) and the injection counts;
- guard-event counts, response counts, front-door counts: /metrics never goes back;
- the drain (shutdown), the request ids, the config version history;
- the MCP upstream servers (connections, stdio children, breakers), the `/mcp`
  sessions and the ledger of results served (toolservers/service.py);
- the rate-limit counters (limits/), the audit log's writer (gateway/audit_log.py).

Nothing here is read from a config version except through `adopt`, which a new
runtime calls with its settings before it serves.
"""

from __future__ import annotations

import time

from audit.config import AuditConfig
from chaos.scheduled import Schedule
from gateway.audit_log import AuditLog
from gateway.drain import Drain
from gateway.events import Events
from gateway.pipeline import RequestIds
from gateway.server.frontdoor import FrontDoorStats
from gateway.slos import SloState
from gateway.stored_responses import PutOutcomes
from gateway.versions import VersionHistory
from limits.config import LimitSettings
from limits.limiter import Limiter, Store
from limits.memory import MemoryStore
from responses.config import ResponsesConfig
from responses.memory import MemoryResponseStore
from responses.store import ResponseStore
from routing.budget import RetryBudget
from routing.config import RoutingSettings
from routing.health import HealthRegistry
from routing.stats import Clock
from routing.transport import PoolTransport
from routing.upstreams import Pools, SharedTransport
from toolservers.config import McpConfig
from toolservers.service import UpstreamPool, state_parts


class State:
    def __init__(
        self,
        clock: Clock = time.monotonic,
        keep_versions: int = 10,
        limits: LimitSettings | None = None,
        responses: ResponsesConfig | None = None,
        mcp: McpConfig | None = None,
        audit: AuditConfig | None = None,
        worker: int = 0,
    ) -> None:
        #: Drives health bookkeeping (stats, breakers, retry budget, chaos schedule);
        #: tests pass their own to move time without sleeping.
        self.clock = clock
        self.created = int(time.time())
        self.health = HealthRegistry(clock)
        self.pools = Pools()
        #: Where the invoke proxy's requests to tool endpoints go out (one pool).
        self.tool_pool = PoolTransport()
        self.budget = RetryBudget(RoutingSettings().retry_budget, clock)
        self.fallbacks: dict[tuple[str, str], int] = {}
        self.hedges: dict[str, int] = {}
        self.chaos_schedule = Schedule(100, clock)
        #: Faults injected, by (scope, fault, where).
        self.chaos_injected: dict[tuple[str, str, str], int] = {}
        self.events = Events()
        #: Client responses by (tenant, endpoint, status, error code): the completion
        #: hook counts, /metrics reads (each viewer its own subtree's).
        self.responses: dict[tuple[str, str, int, str], int] = {}
        #: Reloads by result (`applied`, `refused`, `unchanged`, `frozen`, `canary`).
        self.reloads: dict[str, int] = {}
        #: Rollout steps by action (`started`, `promoted`, `rolled_back`, `aborted`):
        #: started minus the others is the canary running (gateway/rollouts.py).
        self.rollout_steps: dict[str, int] = {}
        self.front_door = FrontDoorStats()
        self.drain = Drain()
        self.ids = RequestIds()
        self.versions = VersionHistory(keep_versions)
        #: Responses stored for `previous_response_id` and `GET /v1/responses/{id}`:
        #: in this process, or in Redis (shared by every worker and replica), with
        #: quotas per key, per tenant and in total (`responses:`; restart-only).
        stored = responses or ResponsesConfig()
        self.responses_store: ResponseStore = (
            _redis_response_store(stored) if stored.shared else MemoryResponseStore(stored)
        )
        #: What became of each response the gateway tried to store (a metric).
        self.response_puts = PutOutcomes()
        #: Rate-limit and quota counters: in this process, or in Redis (shared by every
        #: worker and replica). Which one is fixed at start (`limits.store`).
        settings = limits or LimitSettings()
        store: Store = (
            _redis_limit_store(settings.store, settings.store_timeout_ms / 1000)
            if settings.shared
            else MemoryStore()
        )
        self.limiter = Limiter(store, settings.lease_s)
        #: MCP: the upstream servers, kept by name and identity across reloads (each
        #: Runtime's `start` syncs them to its config; HTTP ones over the tool
        #: endpoints' pool, routing/http1.py: on aiohttp's pool before it, a
        #: `tools/call`'s added p50 fell from ~1.5 ms to ~0.85 ms against httpx's
        #: own pool), and the `/mcp` sessions and served-result ledger, bounded by
        #: the first config's settings (restart-only).
        self.mcp_pool = UpstreamPool(SharedTransport(self.tool_pool))
        self.mcp_sessions, self.mcp_ledger = state_parts(mcp or McpConfig())
        #: The audit log's writer (one chain per process: `-w<worker>` in its stream
        #: name), when `audit.enabled`; started by the gateway before it serves.
        self.audit = AuditLog(audit, worker) if audit is not None and audit.enabled else None
        #: SLO windows, counts and recent outcomes (gateway/slos.py): each Runtime's
        #: `start` adopts its config's SLOs, keeping the windows of unchanged ones.
        self.slos = SloState()

    def adopt(self, budget: RetryBudget) -> None:
        """What the version now serving derived from what is kept here (its retry
        budget under its settings) becomes what the next version starts from."""
        self.budget = budget

    def count_reload(self, result: str) -> None:
        self.reloads[result] = self.reloads.get(result, 0) + 1


# The Redis stores are imported only by a config that names a redis:// store: redis-py
# (and the OpenTelemetry metrics SDK its observability module loads) is ~100 modules
# and ~6 MB that a gateway counting in process never uses (docs/performance.md).


def _redis_limit_store(url: str, timeout_s: float) -> Store:
    from limits.redis_store import RedisStore

    return RedisStore(url, timeout_s)


def _redis_response_store(config: ResponsesConfig) -> ResponseStore:
    from responses.redis_store import RedisResponseStore

    return RedisResponseStore(config)
