"""The process's audit log: one writer (one chain), what a full queue does, and the
records of admin actions.

Lives in `State` (gateway/state.py): the writer outlives config versions, so a
reload never breaks the chain. A request's record is built by the completion hook
(gateway/stages/audit.py) and handed here; an admin action's record is made here
from the acting identity. Nothing here waits for disk: `audit.writer.Writer` queues
and writes in the background (group commit).

A full queue is an *episode*: one WARNING when it starts, one when it ends with the
count of records dropped (or requests refused) in between, never a line per record.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.config import AuditConfig, AuditPolicy
from tenants.identity import Identity

if TYPE_CHECKING:  # imported when the log is on: `cryptography` is ~10 MB a worker
    from audit.keys import Signer

log = logging.getLogger("seawall.audit")

#: Outcomes of a record handed to the log, the `result` label of its counter.
WRITTEN, DROPPED, BLOCKED, REFUSED = "queued", "dropped", "blocked", "refused"


def stream_name(config: AuditConfig, worker: int) -> str:
    """This process's stream: the configured name (default: the host name, a pod's
    name under Kubernetes) and its worker number, so every writer has a chain of
    its own."""
    base = config.stream or re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:56] or "gateway"
    return f"{base}-w{worker}"


def load_signer(config: AuditConfig) -> Signer:
    """The checkpoint signer the config names (`signing_key` or `signing_key_file`)."""
    from audit.keys import Signer, load_private_key

    if config.signing_key is not None:
        pem = config.signing_key.get_secret_value()
    else:
        assert config.signing_key_file is not None  # AuditConfig requires one
        pem = Path(config.signing_key_file).read_text()
    return Signer(load_private_key(pem))


class AuditLog:
    def __init__(self, config: AuditConfig, worker: int = 0) -> None:
        from audit.writer import Writer, WriterSettings

        self.config = config
        self.stream = stream_name(config, worker)
        settings = WriterSettings(
            capacity=config.queue_records,
            batch_window=config.batch_window_ms / 1000,
            segment_max_bytes=config.segment_mib * 1024 * 1024,
            checkpoint_interval=config.checkpoint_interval_ms / 1000,
            fsync=config.fsync,
        )
        self.writer = Writer(Path(config.directory), self.stream, load_signer(config), settings)
        #: Records by outcome (`queued`, `dropped`, `blocked`, `refused` requests).
        self.counts: dict[str, int] = {WRITTEN: 0, DROPPED: 0, BLOCKED: 0, REFUSED: 0}
        #: The full-queue episode under way: when it started and what it cost so far.
        self._episode: dict[str, int] | None = None
        self._episode_started = 0.0

    async def start(self) -> None:
        await self.writer.start()
        log.info("audit log: stream %s in %s", self.stream, self.config.directory)

    async def close(self) -> None:
        await self.writer.close()

    def use_signer(self, signer: Signer) -> None:
        """A reloaded config's key signs the next checkpoints (key rotation: each
        checkpoint names its key id; the verifier takes every public key)."""
        self.writer.signer = signer

    # -- records --------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.writer.full

    def admits(self, policy: AuditPolicy) -> bool:
        """May a request of a tenant with `policy` be served? Only a tenant that
        requires audit and refuses on a full queue is ever told no."""
        if not (policy.required and policy.on_full == "refuse") or not self.writer.full:
            return True
        self._count(REFUSED)
        return False

    async def write(self, record: bytes, policy: AuditPolicy) -> None:
        """Queue `record`; on a full queue, what the tenant's `on_full` says."""
        if self.writer.submit(record):
            self.counts[WRITTEN] += 1
            if self._episode is not None:
                self._end_episode()
            return
        if policy.on_full == "block":
            self._count(BLOCKED)
            await self.writer.submit_wait(record)
            self.counts[WRITTEN] += 1
        else:
            self._count(DROPPED)

    def admin(
        self,
        action: str,
        actor: Identity | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        """Record an admin action (never dropped silently: a full queue counts it)."""
        record = {
            "kind": "admin",
            "time": time.time(),
            "request_id": request_id,
            "action": action,
            "actor": actor.key_id if actor is not None else None,
            "scope": actor.tenant_id if actor is not None else None,
            "tenants": list(actor.chain) if actor is not None else [],
            "target": target,
            "detail": detail or {},
        }
        if self.writer.submit(record):
            self.counts[WRITTEN] += 1
        else:
            self._count(DROPPED)

    # -- full-queue episodes ----------------------------------------------------------

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._episode is None:
            self._episode = {DROPPED: 0, BLOCKED: 0, REFUSED: 0}
            self._episode_started = time.monotonic()
            log.warning(
                "audit queue full (%d records): records are dropped, waited for or "
                "refused per tenant (audit.on_full) until it drains",
                self.config.queue_records,
            )
        self._episode[outcome] += 1

    def _end_episode(self) -> None:
        episode = self._episode
        assert episode is not None
        self._episode = None
        log.warning(
            "audit queue has room again after %.1f s: %d records dropped, %d waited "
            "for, %d requests refused",
            time.monotonic() - self._episode_started,
            episode[DROPPED],
            episode[BLOCKED],
            episode[REFUSED],
        )
