"""The shape of `audit:` in the gateway's config, and of `audit:` on a tenant.

The gateway-wide section says where the log lives and how it is written; a tenant's
section says what its requests' records hold and what happens to them when the
writer cannot keep up. Both are documented field by field in docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, model_validator

from common.config import Frozen, Identifier, Secret

#: What a request does when the writer's queue is full: its record is dropped (and
#: counted), the completion waits for room (the client's response is already sent;
#: the connection's next request waits), or (for tenants that require audit) the
#: request is refused up front with 503 `audit_unavailable`.
OnFull = Literal["drop", "block", "refuse"]


class TenantAudit(Frozen):
    """Inherited down the tenant tree: a field left out is the parent's (the root's
    is `content: false`, `required: false`, `on_full: drop`)."""

    #: Record the prompt and the completion text of this subtree's requests.
    content: bool | None = None
    #: Serve a request only if its record can be written: with `on_full: refuse`, a
    #: full queue (or a writer that failed) refuses new requests with 503.
    required: bool | None = None
    on_full: OnFull | None = None


class AuditPolicy(Frozen):
    """A tenant's effective settings, its chain applied (tenants/permissions.py)."""

    content: bool = False
    required: bool = False
    on_full: OnFull = "drop"

    def under(self, own: TenantAudit | None) -> AuditPolicy:
        """This policy with a child's own settings on top."""
        if own is None:
            return self
        return AuditPolicy(
            content=self.content if own.content is None else own.content,
            required=self.required if own.required is None else own.required,
            on_full=self.on_full if own.on_full is None else own.on_full,
        )


#: What a tenant gets with no `audit:` anywhere in its chain.
DEFAULT_POLICY = AuditPolicy()


class AuditConfig(Frozen):
    """`audit:`: off unless `enabled`. The directory, the stream and the queue's
    size are fixed at start (restart-only); the signing key and the tenants'
    settings follow reloads."""

    enabled: bool = False
    #: Where the segments live (one sub-directory per stream); created if missing.
    directory: str = "audit-log"
    #: This process's stream name (one chain per writer); `-w<N>` is appended for
    #: worker N. Default: the host name (a pod's name under Kubernetes).
    stream: Identifier | None = None
    #: The Ed25519 private key (PKCS#8 PEM) that signs checkpoints: `env:NAME`, or
    #: `signing_key_file`. `seawall audit keygen` makes one.
    signing_key: Secret | None = None
    signing_key_file: str | None = None
    #: Records waiting for the writer, at most; past it, each tenant's `on_full`.
    queue_records: int = Field(10_000, ge=1, le=1_000_000)
    #: Group commit: records are written and fsynced together at most this long
    #: after the first of them was queued. It bounds what a `kill -9` loses.
    batch_window_ms: int = Field(50, ge=1, le=10_000)
    #: A signed checkpoint at least this often while records flow.
    checkpoint_interval_ms: int = Field(1_000, ge=10, le=60_000)
    #: A segment is closed (with a checkpoint) past this size.
    segment_mib: int = Field(64, ge=1, le=4096)
    #: fsync after every batch (off only for tests and benchmarks on tmpfs).
    fsync: bool = True
    #: The query index (SQLite, WAL); default `<directory>/index.sqlite3`.
    index: str | None = None
    #: The root tenant's settings; tenants inherit and may override them.
    defaults: AuditPolicy = Field(default_factory=lambda: DEFAULT_POLICY)

    @model_validator(mode="after")
    def _one_key(self) -> AuditConfig:
        if self.signing_key is not None and self.signing_key_file is not None:
            raise ValueError("set at most one of signing_key or signing_key_file")
        if self.enabled and self.signing_key is None and self.signing_key_file is None:
            raise ValueError(
                "an enabled audit log needs a signing key: signing_key (env:NAME) or "
                "signing_key_file; `seawall audit keygen` writes one"
            )
        return self

    @property
    def index_path(self) -> str:
        return self.index or f"{self.directory.rstrip('/')}/index.sqlite3"


def effective_policies(
    root: AuditPolicy,
    chains: Mapping[str, Sequence[str]],
    own: Mapping[str, TenantAudit | None],
) -> dict[str, AuditPolicy]:
    """Each tenant's settings: the root's, then each tenant's own down its chain."""
    policies: dict[str, AuditPolicy] = {}
    for tenant, chain in chains.items():
        policy = root
        for member in chain:
            policy = policy.under(own.get(member))
        policies[tenant] = policy
    return policies
