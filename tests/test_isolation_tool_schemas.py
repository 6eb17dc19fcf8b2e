"""The schemas requests offer for their tools are compiled once and cached per tenant.

A compiled JSON Schema is milliseconds of work, done on the request that first offers
it. With one cache for every tenant, a sibling offering more schemas than it holds
pushed a victim's out, so the victim's next requests compiled them again; and how
fast a schema was accepted told a tenant whether another had offered it. The attacker
here holds every role of the sibling tenant; what the victim observes is whether its
own schemas are compiled again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from tests.isolation import ATTACKER, VICTIM, call, two_tenants
from tests.support import running_gateway
from tools import schemas
from tools.schemas import SCHEMAS_PER_TENANT, SchemaCache, TenantSchemaCaches

PATH = "/v1/chat/completions"
#: Distinct schemas the attacker offers: more than its cache holds, and more than the
#: single cache of every tenant held before.
FLOOD = max(2 * SCHEMAS_PER_TENANT, 256 + 16)


def tool(name: str, field: str) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {field: {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def body(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "tools": tools}


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The schemas compiled (each one a cache did not hold)."""
    seen: list[Any] = []
    compile_ = SchemaCache._compile

    def counting(schema: Any) -> Any:
        seen.append(schema)
        return compile_(schema)

    monkeypatch.setattr(schemas.SchemaCache, "_compile", staticmethod(counting))
    return seen


def test_a_sibling_flooding_schemas_never_evicts_the_victims(compiled: list[Any]) -> None:
    """The victim's three schemas are compiled once. The attacker offers the very
    same three: nothing the victim compiled answers it (each is compiled again). Then
    it offers more distinct schemas than a tenant's cache holds (and than the one
    cache for every tenant held before, 256): the victim's next request compiles
    nothing."""
    victims = [tool(f"lookup_{n}", f"victim_field_{n}") for n in range(3)]
    with running_gateway(two_tenants()) as gateway:
        reply = call(gateway.url, f"{VICTIM}-user", "POST", PATH, json=body(victims))
        assert reply.status_code == 200, reply.text
        assert len(compiled) == 3
        compiled.clear()
        reply = call(gateway.url, f"{ATTACKER}-all", "POST", PATH, json=body(victims))
        assert reply.status_code == 200, reply.text
        assert len(compiled) == 3, "the victim's compiled schemas answered the attacker"
        compiled.clear()
        flood = [tool(f"flood_{n}", f"field_{n}") for n in range(FLOOD)]
        for start in range(0, len(flood), 16):
            reply = call(
                gateway.url, f"{ATTACKER}-all", "POST", PATH, json=body(flood[start : start + 16])
            )
            assert reply.status_code == 200, reply.text
        assert len(compiled) == FLOOD
        compiled.clear()
        reply = call(gateway.url, f"{VICTIM}-user", "POST", PATH, json=body(victims))
        assert reply.status_code == 200, reply.text
        assert compiled == [], "the attacker's flood evicted the victim's schemas"


def test_tenants_are_bounded_the_least_recently_seen_forgotten_first() -> None:
    caches = TenantSchemaCaches(per_tenant=2, max_tenants=2)
    first, second = caches.of("a"), caches.of("b")
    assert caches.of("a") is first  # now the most recently seen
    caches.of("c")  # past the bound: "b", the least recently seen, is forgotten
    assert len(caches) == 2
    assert caches.of("a") is first
    assert caches.of("b") is not second
    # Each tenant's cache holds at most `per_tenant` schemas.
    for n in range(5):
        first.get({"type": "object", "title": str(n)})
    assert len(first._entries) == 2


def sized(name: int, padding: int) -> dict[str, Any]:
    return {"type": "object", "title": str(name), "description": "x" * padding}


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 400)), max_size=40))
@settings(max_examples=examples(200), deadline=None)
def test_a_cache_is_bounded_in_count_and_in_bytes(offers: list[tuple[int, int]]) -> None:
    """Against a model: the least recently used schemas leave first, while more than
    3 are kept or their text passes 600 bytes; one longer than that is never kept."""
    cache = SchemaCache(size=3, max_bytes=600)
    model: OrderedDict[bytes, None] = OrderedDict()
    for name, padding in offers:
        schema = sized(name, padding)
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        assert cache.get(schema) is not None
        if key in model:
            model.move_to_end(key)
        elif len(key) <= 600:
            model[key] = None
            while len(model) > 3 or sum(map(len, model)) > 600:
                model.popitem(last=False)
        assert list(cache._entries) == list(model)
        assert cache.bytes == sum(map(len, model)) <= 600
