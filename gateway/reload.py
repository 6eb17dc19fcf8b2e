"""Applying a new config version while serving: validate fully, build, start, swap.

`Reloader.apply(documents, origin)` is the one way a config changes, whatever
brought it (a file or directory watch, etcd, `PUT /admin/config`, a rollback):

1. The documents are merged and validated in a worker thread, with every problem
   collected (check-config's format), and compared with the serving config: a
   change to a setting only a restart can apply (the listen address, the front
   door's limits, the shutdown timings: `RESTART_ONLY`) refuses the whole version,
   never half-applies it.
2. The parts that cost real time (schemas compiled, files read) are built in the
   worker thread too (`Compiled`); the runtime is assembled on the event loop from
   them and the State, and started (its pools opened) before anyone can use it.
3. The swap is one assignment on the event loop. Requests that started on the old
   runtime keep it to their last byte; it is closed after their end, and the health
   entries no live runtime uses are dropped.

A refused version never serves: it is recorded (`GET /admin/config`,
`seawall_config_reloads_total{result="refused"}`, the log), and the last good
version keeps serving. After each retirement the garbage collector's frozen
generation is thawed, collected and frozen again, so the replaced runtime's cycles
are actually freed (`gc.freeze()` would otherwise keep them forever).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from common.redact import LOG_REDACTION
from gateway.config import ConfigError, GatewayConfig, audit_serving_problems, parse_config
from gateway.pipeline import CompletionHook
from gateway.runtime import Compiled, Runtime
from gateway.sources import Documents, Source, merge
from gateway.state import State
from gateway.versions import ConfigVersion, RefusedVersion, documents_id
from rollouts.config import RolloutSettings
from tenants.identity import Identity


class Canaries(Protocol):
    """What the reloader asks of guarded rollouts (gateway/rollouts.py's `Rollouts`),
    which in turn uses the reloader's lock, swap and retirements."""

    reloader: Reloader

    @property
    def running(self) -> bool: ...

    def keeps(self, incoming: str, from_source: bool) -> ConfigVersion | None: ...

    async def begin(
        self,
        serving: Runtime,
        candidate: Runtime,
        settings: RolloutSettings,
        actor: Identity | None,
        from_source: bool,
    ) -> None: ...

    async def supersede(self, origin: str, actor: Identity | None) -> None: ...

    async def aclose(self) -> None: ...


log = logging.getLogger("seawall.reload")

#: Settings a running process cannot take from a reload: the listener and the front
#: door are built once, before the first request. Changing one needs a restart.
RESTART_ONLY = (
    "server.host",
    "server.port",
    "server.max_header_bytes",
    "server.max_headers",
    "server.header_timeout_s",
    "server.body_timeout_s",
    "server.keepalive_timeout_s",
    "server.max_connections",
    "server.drain_s",
    "server.shutdown_timeout_s",
    "server.trusted_proxies",
    "reload.resync_s",
    "limits.store",
    "responses.store",
    "responses.store_timeout_ms",
    "responses.ttl_seconds",
    "responses.max_record_bytes",
    "responses.per_key",
    "responses.per_tenant",
    "responses.total",
    # The bounds of `/mcp` sessions and of the served-result ledger size what State
    # keeps across versions (gateway/state.py).
    "mcp.sessions",
    "mcp.ledger",
    # The writer (its files, its queue) lives as long as the process (gateway/state.py);
    # the signing key and the tenants' audit settings follow reloads.
    "audit.enabled",
    "audit.directory",
    "audit.stream",
    "audit.queue_records",
    "audit.batch_window_ms",
    "audit.checkpoint_interval_ms",
    "audit.segment_mib",
    "audit.fsync",
    "audit.index",
)


class Refused(Exception):
    def __init__(self, refused: RefusedVersion, frozen: bool = False) -> None:
        super().__init__("; ".join(refused.problems))
        self.refused = refused
        #: Refused by the change freeze (an SLO over its budget), not for a problem.
        self.frozen = frozen


class Conflict(Exception):
    """`If-Match` named a version that is not the one serving."""

    def __init__(self, expected: str, current: str) -> None:
        super().__init__(f"expected version {expected}, serving {current}")
        self.expected = expected
        self.current = current


def restart_only_changes(serving: GatewayConfig, proposed: GatewayConfig) -> list[str]:
    problems = []
    for path in RESTART_ONLY:
        section, field = path.split(".")
        before = getattr(getattr(serving, section), field)
        after = getattr(getattr(proposed, section), field)
        if before != after:
            problems.append(
                f"{path}: cannot change without a restart ({before!r} -> {after!r}); "
                "restart the gateway to apply it"
            )
    return problems


def validate(
    files: Mapping[str, str],
    origin: str,
    unreadable: Sequence[str] = (),
    serve_on: str | None = None,
) -> GatewayConfig:
    """The config the documents describe, or ConfigError with every problem (what the
    source could not read, `unreadable`, among them; with `serve_on`, what serving
    it would refuse too)."""
    data, problems = merge(Documents.of(files, origin, problems=unreadable))
    if problems:
        raise ConfigError(origin, problems)
    return parse_config(data, origin, serve_on)


class Reloader:
    def __init__(
        self,
        state: State,
        current: Callable[[], Runtime],
        swap: Callable[[Runtime], None],
        completions: Sequence[CompletionHook] = (),
        rollouts: Canaries | None = None,
    ) -> None:
        self.state = state
        self.current = current
        self._swap = swap
        self.completions = tuple(completions)
        #: Held while a version is checked, built and swapped in, and while a rollout
        #: moves (gateway/rollouts.py): one change at a time.
        self.lock = asyncio.Lock()
        #: Guarded rollouts; None: every version applies at once.
        self.rollouts = rollouts
        if rollouts is not None:
            rollouts.reloader = self
        #: Runtimes replaced but still finishing requests.
        self.retiring: set[Runtime] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def check(
        self,
        files: Mapping[str, str],
        origin: str,
        expected: str | None = None,
        unreadable: Sequence[str] = (),
        actor: Identity | None = None,
        action: str = "config.applied",
        emergency: str | None = None,
    ) -> GatewayConfig:
        """What `apply` would check, without applying: the config, or `Refused` (recorded
        like any refusal, in the audit log too, with `actor`: the admin key that
        proposed it, None for a config source) or `Conflict`."""
        serving = self.current()
        if expected is not None and expected != serving.version.id:
            raise Conflict(expected, serving.version.id)
        try:
            config = await asyncio.to_thread(validate, files, origin, unreadable)
            problems = restart_only_changes(serving.config, config)
            # A signing key that cannot be read would fail the new version's start.
            problems += await asyncio.to_thread(audit_serving_problems, config)
            if problems:
                raise ConfigError(origin, problems)
        except ConfigError as exc:
            refused = self.state.versions.refuse(files, origin, exc.problems)
            self.state.count_reload("refused")
            problems = [LOG_REDACTION.text(problem) for problem in exc.problems]
            self._audit("config.refused", actor, refused.id, origin, problems=problems)
            log.error("config from %s refused; still serving version %s:\n%s",
                      origin, serving.version.id, exc.render())  # fmt: skip
            raise Refused(refused) from None
        if action != "config.rolled_back" and emergency is None:
            self._freeze(serving, files, origin, actor)
        return config

    async def apply(
        self,
        files: Mapping[str, str],
        origin: str,
        expected: str | None = None,
        unreadable: Sequence[str] = (),
        actor: Identity | None = None,
        action: str = "config.applied",
        emergency: str | None = None,
        canary: RolloutSettings | None = None,
        from_source: bool = False,
    ) -> ConfigVersion:
        """Serve the config `files` describe; raise `Refused` (with every problem) or
        `Conflict` (`expected` is not the serving version's id) instead. An applied
        version is an audit record: `action` (`config.applied`, `config.rolled_back`)
        by `actor` (None: a config source).

        With `canary` (or `from_source` while the serving config's
        `reload.rollout.mode` is `canary`), the version starts as a canary beside the
        serving one instead (gateway/rollouts.py), and the version returned is the
        candidate's. A new version while a rollout runs ends it first (aborted,
        superseded), unless it is the candidate itself; a version a rollout rolled
        back is not taken again from the source (it still holds it when it is
        read-only), only from a person.

        While an SLO has consumed more than `reload.freeze_at_budget_consumed` of its
        budget, a change is refused (`Refused.frozen`) unless it is a rollback (back to
        a version that served before) or marked as the fix (`emergency`: the reason,
        recorded with the change)."""
        async with self.lock:
            serving = self.current()
            incoming = documents_id(files)
            rollouts = self.rollouts
            if rollouts is not None and not unreadable:
                kept = rollouts.keeps(incoming, from_source)
                if kept is not None:
                    self.state.count_reload("unchanged")
                    return kept
                if rollouts.running:
                    await rollouts.supersede(origin, actor)
            if incoming == serving.version.id and not unreadable:
                if expected is not None and expected != serving.version.id:
                    raise Conflict(expected, serving.version.id)
                self.state.count_reload("unchanged")
                return serving.version
            config = await self.check(files, origin, expected, unreadable, actor, action, emergency)
            settings = serving.config.reload.rollout
            if canary is None and from_source and settings.mode == "canary":
                canary = settings
            runtime = await self.build(config, files, origin)
            if canary is not None and rollouts is not None:
                await rollouts.begin(serving, runtime, canary, actor, from_source)
                self.state.count_reload("canary")
                return runtime.version
            await runtime.adopt()
            self.serve(runtime, action, actor, emergency=emergency)
            return runtime.version

    async def build(self, config: GatewayConfig, files: Mapping[str, str], origin: str) -> Runtime:
        """A started runtime of a checked config (its version added to the history),
        not yet serving."""
        compiled = await asyncio.to_thread(Compiled, config)
        version = self.state.versions.add(files, origin)
        runtime = Runtime(compiled, self.state, version, self.completions)
        await runtime.start()
        return runtime

    def serve(
        self,
        runtime: Runtime,
        action: str,
        actor: Identity | None,
        **detail: object,
    ) -> None:
        """`runtime` (started and adopted) becomes the serving one, on the event loop,
        with the lock held; the one it replaces retires after its last request."""
        serving = self.current()
        version = runtime.version
        self._swap(runtime)
        self.state.adopt(runtime.router.budget)
        self.state.count_reload("applied")
        self._audit(
            action, actor, version.id, version.origin, number=version.number,
            replaced=serving.version.id, **detail,
        )  # fmt: skip
        log.info(
            "config version %s (#%d, from %s) serving; replaced %s",
            version.id,
            version.number,
            version.origin,
            serving.version.id,
        )
        self.retire_later(serving)

    def retire_later(self, runtime: Runtime) -> None:
        """Closes `runtime` once its last request is done (it serves no new ones)."""
        self.retiring.add(runtime)
        task = asyncio.create_task(self._retire(runtime))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _freeze(
        self, serving: Runtime, files: Mapping[str, str], origin: str, actor: Identity | None
    ) -> None:
        """Refuse the change while an SLO is over the freeze share of its budget."""
        share = serving.config.reload.freeze_at_budget_consumed
        burning = self.state.slos.over_budget(share)
        if not burning:
            return
        problems = [
            f"change frozen: SLO {s.name!r} has consumed {s.budget_consumed:.0%} of its error "
            f"budget (the freeze starts at {share:.0%}); a rollback, or a change marked as "
            "the fix (x-seawall-emergency: <reason>), still applies"
            for s in burning
        ]
        refused = self.state.versions.refuse(files, origin, problems)
        self.state.count_reload("frozen")
        self._audit("config.frozen", actor, refused.id, origin, problems=problems)
        log.warning("config from %s refused: %s", origin, problems[0])
        raise Refused(refused, frozen=True)

    def _audit(
        self, action: str, actor: Identity | None, version: str, origin: str, **detail: object
    ) -> None:
        if self.state.audit is not None:
            self.state.audit.admin(action, actor, version, {"origin": origin, **detail})

    async def _retire(self, runtime: Runtime) -> None:
        try:
            await runtime.retire()
        finally:
            self.retiring.discard(runtime)
        live = [self.current(), *self.retiring]
        self.state.health.retain(set().union(*(r.identities for r in live)))
        # The replaced runtime was frozen with everything else at start-up: thaw,
        # collect its cycles, and freeze what is left (a full collection, once per
        # reload, on the loop: ~10 ms on a small heap).
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    async def watch(self, source: Source) -> None:
        """Apply every version the source yields; a refused one is logged and
        recorded, and watching goes on (the source retries and resyncs by itself)."""
        async for documents in source.watch():
            try:
                await self.apply(
                    documents.files, documents.origin, None, documents.problems, from_source=True
                )
            except (Refused, Conflict):
                continue

    async def aclose(self) -> None:
        """Waits for the replaced runtimes still finishing (at shutdown), a running
        canary's among them."""
        if self.rollouts is not None:
            await self.rollouts.aclose()
        for task in list(self._tasks):
            await task
