"""`GET /admin/audit`: search or aggregate the audit log, within the caller's scope.

Needs the `auditor` or the `admin` role. A key of a tenant reads the records of its
subtree only (requests of its tenants; admin actions of keys scoped there): the
scope is a filter the caller cannot lift, applied on top of theirs. A root key
reads everything, the gateway's own actions (config sources) included.

Query parameters are the filters of `seawall audit query` (audit/query.py), plus
`by` (comma-separated fields) and `bucket` (`1m`) to aggregate, and `limit` and
`cursor` to page. The writer is flushed first (a query sees every record queued
before it: waits at most one batch window), then the index is brought up to date
from the segments in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.base import AdminResource
from gateway.errors import GatewayError
from gateway.stages.authenticate import require

if TYPE_CHECKING:
    from audit.index import AuditIndex
    from audit.query import Query

T = TypeVar("T")


class AuditAdmin(AdminResource):
    _index: AuditIndex | None = None
    #: One query at a time: the index holds one SQLite connection.
    _busy: asyncio.Lock | None = None

    async def get(self, request: Request) -> Response:
        from audit.query import QueryError, parse_query

        gateway = self.gateway
        identity = require(
            gateway.runtime.tenants, request.headers.get("authorization"), "auditor", "admin"
        )
        log = gateway.state.audit
        if log is None:
            raise GatewayError(
                404, "The audit log is off (audit.enabled in the config).", code="audit_disabled"
            )
        try:
            query = parse_query(dict(request.query_params))
        except QueryError as exc:
            raise GatewayError(400, f"Bad audit query: {exc}", code="invalid_value") from None
        if not identity.root_scoped:  # a filter the caller cannot lift
            query = dataclasses.replace(
                query, filter=dataclasses.replace(query.filter, scope=identity.tenant_id)
            )
        # Read-your-writes: every record queued before this query is in it.
        await log.writer.flush()
        if self._busy is None:
            self._busy = asyncio.Lock()
        async with self._busy:
            return self.respond(await asyncio.to_thread(self._answer, query))

    async def read(self, answer: Callable[[AuditIndex], T]) -> T:
        """`answer` run on the index brought up to date, off the loop, one reader at a
        time (the index holds one connection): the admin page's recent decisions."""
        if self._busy is None:
            self._busy = asyncio.Lock()
        async with self._busy:
            return await asyncio.to_thread(self._read, answer)

    def _read(self, answer: Callable[[AuditIndex], T]) -> T:
        index = self._open()
        index.update()
        return answer(index)

    def _answer(self, query: Query) -> dict[str, Any]:
        from audit.query import aggregate, search

        index = self._open()
        index.update()
        if query.aggregating:
            rows = aggregate(index, query.filter, query.by, query.bucket_s, query.metrics)
            return {"object": "list", "data": rows}
        page = search(index, query.filter, query.limit, query.cursor)
        records = [{**entry.record, "stream": entry.stream} for entry in page.entries]
        return {"object": "list", "data": records, "cursor": page.cursor}

    def _open(self) -> AuditIndex:
        from audit.index import AuditIndex

        if self._index is None:
            config = self.gateway.runtime.config.audit
            self._index = AuditIndex(Path(config.index_path), Path(config.directory))
        return self._index
