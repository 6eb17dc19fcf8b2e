"""Sessions of `/mcp`: bounded per key and in total, expiring when idle, owned.

A session is what `initialize` opens and `Mcp-Session-Id` names afterwards. It is
state the gateway holds for a client, so a client must not be able to hold
unlimited amounts of it, nor reach another client's (DESIGN.md 10b):

- **owned**: a session belongs to the key that opened it; looked up with another
  key, its id is unknown (the same 404 as an id never issued), so ids cannot be
  probed across keys, and a leaked id is useless without its key;
- **per key**: a key opening one more session than `max_per_key` closes its own
  least recently used one (an agent that never sends DELETE does not lock itself
  out, and can only ever evict its own);
- **per tenant**: the same at `max_per_tenant` for all the keys of one tenant
  together, which closes that tenant's least recently used session: a tenant with
  many keys cannot fill the gateway's room for the others;
- **in total**: at `max_total`, a new session is refused (`SessionsFull`), never
  made room for by closing another key's;
- **idle**: unused for `idle_ttl_s`, a session is closed; expiry is checked on
  every access and swept, oldest first, whenever a session opens (an OrderedDict
  by last use: O(1) per operation, no timer task);
- **explicit close**: DELETE closes it at once.

Each session has a bounded outbound queue for server-to-client messages (the
`notifications/tools/list_changed` a GET stream delivers): when full, the oldest
message is dropped and counted; a notification already waiting is not queued twice.
Closing a session wakes its GET stream, which ends.

Ids are 32 random bytes from `secrets`, base64url: visible ASCII, as the spec asks.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolservers.config import SessionSettings
from toolservers.jsonrpc import Message, Notification

Clock = Callable[[], float]


class SessionsFull(Exception):
    """No room for a new session: the gateway-wide cap is reached."""


class Outbound:
    """A session's bounded queue of server-to-client messages."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, message: Message) -> None:
        if self.closed:
            return
        if isinstance(message, Notification) and message in self._items:
            return  # a list_changed already waiting says the same thing
        if len(self._items) >= self._size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(message)
        self._ready.set()

    def take_all(self) -> list[Message]:
        items = list(self._items)
        self._items.clear()
        self._ready.clear()
        return items

    async def wait(self, within: float | None = None) -> list[Message]:
        """The messages waiting, after waiting up to `within` seconds for one; []
        when the time ran out or the queue closed."""
        if not self._items and not self.closed:
            try:
                async with asyncio.timeout(within):
                    await self._ready.wait()
            except TimeoutError:
                return []
        return self.take_all()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._ready.set()  # wakes a waiting stream, which sees `closed`

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class Session:
    id: str
    key_id: str
    #: The protocol revision `initialize` agreed on.
    protocol_version: str
    #: What the client said it supports (`initialize`'s `capabilities`).
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any]
    outbound: Outbound
    last_used: float
    #: `notifications/initialized` arrived.
    initialized: bool = False
    #: A GET stream is open for it (one at a time).
    streaming: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    tenant: str = ""


class SessionStore:
    def __init__(self, settings: SessionSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        #: Every open session, least recently used first.
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        #: Per key, its sessions' ids, least recently used first.
        self._by_key: dict[str, OrderedDict[str, None]] = {}
        #: Per tenant, its sessions' ids, least recently used first.
        self._by_tenant: dict[str, OrderedDict[str, None]] = {}
        self.expired = 0
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def count(self, key_id: str) -> int:
        return len(self._by_key.get(key_id, ()))

    def tenant_count(self, tenant: str) -> int:
        return len(self._by_tenant.get(tenant, ()))

    def open(
        self,
        key_id: str,
        protocol_version: str,
        capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        tenant: str = "",
    ) -> Session:
        """A new session for `key_id` of `tenant`; `SessionsFull` when the gateway has
        no room."""
        now = self._clock()
        self._sweep(now)
        for own, cap in (
            (self._by_key.get(key_id), self.settings.max_per_key),
            (self._by_tenant.get(tenant), self.settings.max_per_tenant),
        ):
            if own is not None and len(own) >= cap:
                self._remove(next(iter(own)))
                self.evicted += 1
        if len(self._sessions) >= self.settings.max_total:
            self.refused += 1
            raise SessionsFull(
                f"the gateway holds {self.settings.max_total} MCP sessions, its maximum"
            )
        session = Session(
            id=secrets.token_urlsafe(32),
            key_id=key_id,
            protocol_version=protocol_version,
            client_capabilities=capabilities or {},
            client_info=client_info or {},
            outbound=Outbound(self.settings.queue_size),
            last_used=now,
            tenant=tenant,
        )
        self._sessions[session.id] = session
        self._by_key.setdefault(key_id, OrderedDict())[session.id] = None
        self._by_tenant.setdefault(tenant, OrderedDict())[session.id] = None
        return session

    def get(self, key_id: str, session_id: str) -> Session | None:
        """The session, touched; None when it does not exist, expired, or belongs to
        another key (indistinguishable, on purpose)."""
        session = self._sessions.get(session_id)
        if session is None or session.key_id != key_id:
            return None
        now = self._clock()
        if now - session.last_used > self.settings.idle_ttl_s:
            self._remove(session_id)
            self.expired += 1
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        self._by_key[key_id].move_to_end(session_id)
        self._by_tenant[session.tenant].move_to_end(session_id)
        return session

    def close(self, key_id: str, session_id: str) -> bool:
        """DELETE: True when the key's session was open (and is now closed)."""
        if self.get(key_id, session_id) is None:
            return False
        self._remove(session_id)
        return True

    def sessions(self) -> list[Session]:
        """Every open session (for broadcasting a list_changed), expired ones swept."""
        self._sweep(self._clock())
        return list(self._sessions.values())

    def broadcast(self, message: Message, wants: Callable[[Session], bool] = lambda s: True) -> int:
        """Queues `message` on every open session `wants` accepts; how many."""
        count = 0
        for session in self.sessions():
            if wants(session):
                session.outbound.put(message)
                count += 1
        return count

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self._remove(session_id)

    def _sweep(self, now: float) -> None:
        ttl = self.settings.idle_ttl_s
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if now - session.last_used <= ttl:
                return
            self._remove(session_id)
            self.expired += 1

    def _remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        for index, owner in ((self._by_key, session.key_id), (self._by_tenant, session.tenant)):
            own = index.get(owner)
            if own is not None:
                own.pop(session_id, None)
                if not own:
                    del index[owner]
        session.outbound.close()
