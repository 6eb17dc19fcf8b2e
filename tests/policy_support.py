"""Policy attributes for tests: an ordinary request, any attribute overridden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies import Attributes


def ordinary(chain: tuple[str, ...], listed: Mapping[str, str], **values: Any) -> Attributes:
    """A request of the tenant at the end of `chain` with ordinary values (`listed`:
    the headers attribute); `values` override any attribute, `headers` included."""
    base: dict[str, Any] = {
        "tenant": chain[-1],
        "tenants": chain,
        "key": "k1",
        "roles": ("user",),
        "model": "gpt-4o",
        "endpoint": "chat",
        "prompt_tokens": 100,
        "max_tokens": 0,
        "stream": False,
        "tools": (),
        "tool_results": False,
        "headers": dict(listed),
        "hour": 12,
        "weekday": 2,
        "client_ip": "192.0.2.1",
        "server": "",
        "tool": "",
        "argument_names": (),
        "annotations": (),
    }
    base.update(values)
    return Attributes(**base)
