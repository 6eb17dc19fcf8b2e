"""The gateway: composes routing, tools, tenants, policies, limits and responses behind
one OpenAI-compatible HTTP API.

httpx is imported here first, before any module of the gateway needs it, without its
command-line client: httpx loads it (click, rich, pygments: ~75 modules, ~3.5 MB) at
import whenever they are installed, and a server never runs it (common/imports.py).
"""

from common.imports import without

with without("httpx._main"):
    import httpx  # noqa: F401
