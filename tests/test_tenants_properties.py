"""Properties of the tenant tree, checked with hypothesis.

- for random trees whose allow-lists and caps are drawn either within the parent's
  or anywhere, a build fails exactly when some tenant names more than an ancestor
  allows (or caps above one); when it succeeds, every descendant's effective sets
  are subsets of every ancestor's, caps never exceed an ancestor's, and defaults
  are the chain's, nearest wins;
- `narrow` alone (the safety net under the build's checks) never yields more than
  the parent allows, whatever the child's config says;
- for random parent graphs (unknown parents, cycles, self-parents), a build fails
  exactly when some tenant cannot reach the root, names each cycle once, and
  otherwise yields chains and subtrees that agree with the parents;
- whatever `Authorization` header arrives, authentication returns the key whose
  token it carries or raises `Unauthenticated` with one of the three messages.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.build import TenantsError, build_tenants
from tenants.config import ROOT, KeyConfig, TenantConfig
from tenants.keys import INCORRECT_KEY, MALFORMED_HEADER, MISSING_KEY, Unauthenticated
from tenants.known import Known
from tenants.permissions import Permissions, narrow
from tenants.tree import Tenants
from tests.examples import examples

GROUPS = {f"g{i}": [f"d{i}a", f"d{i}b"] for i in range(5)}
TOOLS = ["t0", "t1", "t2", "t3"]
KNOWN = Known.of(GROUPS, TOOLS)
FIELDS = ("models", "tools", "chaos_targets", "deployments")
CAPS = ("max_tokens", "max_prompt_tokens")
DEFAULT_KEYS = ("model", "tier", "stream")
SETTINGS = settings(max_examples=examples(300), deadline=None)


def universe(field: str) -> list[str]:
    return sorted(KNOWN.names(field))


#: How a tenant sets an allow-list or a cap: left out, within what its parent allows
#: (valid), or anything (maybe more than the parent allows). Weighted towards valid
#: settings so that deep trees that build are common.
CHOICES = st.sampled_from(["absent", "absent", "within", "within", "within", "anywhere"])


def subset(draw: st.DrawFn, pool: list[str]) -> list[str]:
    """Any subset of `pool` in one draw (a bitmask), cheaper than a list strategy."""
    mask = draw(st.integers(0, 2 ** len(pool) - 1))
    return [name for bit, name in enumerate(pool) if mask >> bit & 1]


@st.composite
def trees(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Tenants `t0..tn` in config order, each a child of the root or of an earlier
    one (often the previous one, for depth); each allow-list and cap is absent,
    within what the parent allows, or anything."""
    count = draw(st.integers(1, 9))
    tenants: list[dict[str, Any]] = []
    effective: list[dict[str, Any]] = []
    for i in range(count):
        parent = draw(st.just(i - 1) | st.integers(-1, i - 1))
        inherited = effective[parent] if parent >= 0 else dict.fromkeys(FIELDS + CAPS)
        allow: dict[str, list[str]] = {}
        caps: dict[str, int] = {}
        mine = dict(inherited)
        for field in FIELDS:
            choice = draw(CHOICES)
            if choice == "absent":
                continue
            pool = inherited[field] if choice == "within" and inherited[field] is not None else None
            allow[field] = subset(draw, pool if pool is not None else universe(field))
            mine[field] = [
                n for n in allow[field] if inherited[field] is None or n in inherited[field]
            ]
        for cap in CAPS:
            choice = draw(CHOICES)
            if choice == "absent":
                continue
            ceiling = inherited[cap] if choice == "within" and inherited[cap] is not None else 100
            caps[cap] = draw(st.integers(1, ceiling))
            mine[cap] = min(caps[cap], inherited[cap] or caps[cap])
        effective.append(mine)
        defaults = draw(
            st.dictionaries(st.sampled_from(DEFAULT_KEYS), st.integers(0, 3) | st.booleans())
        )
        tenants.append(
            {
                "id": f"t{i}",
                "parent": f"t{parent}" if parent >= 0 else None,
                "allow": allow,
                "caps": caps,
                "defaults": defaults,
            }
        )
    return tenants


def chain_of(raw: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The configs from the top ancestor down to `raw[index]` (acyclic input)."""
    by_id = {t["id"]: t for t in raw}
    chain = [raw[index]]
    while chain[0]["parent"] is not None:
        chain.insert(0, by_id[chain[0]["parent"]])
    return chain


def expected_to_fail(raw: list[dict[str, Any]]) -> bool:
    """The oracle, without effective sets: some tenant lists a name that an
    ancestor's own list leaves out, or caps above an ancestor's own cap."""
    for index in range(len(raw)):
        *ancestors, own = chain_of(raw, index)
        for ancestor in ancestors:
            for field in FIELDS:
                if (
                    field in own["allow"]
                    and field in ancestor["allow"]
                    and not set(own["allow"][field]) <= set(ancestor["allow"][field])
                ):
                    return True
            for cap in CAPS:
                if cap in own["caps"] and own["caps"][cap] > ancestor["caps"].get(cap, 1e9):
                    return True
    return False


def build(raw: list[dict[str, Any]], keys: list[KeyConfig] | None = None) -> Tenants | list[str]:
    """The built tree, or the problems reported."""
    try:
        return build_tenants([TenantConfig.model_validate(t) for t in raw], keys or [], KNOWN)
    except TenantsError as exc:
        return exc.problems


@settings(max_examples=examples(200), deadline=None)
@given(trees())
def test_a_child_never_exceeds_an_ancestor(raw: list[dict[str, Any]]) -> None:
    tree = build(raw)
    if isinstance(tree, list):
        assert expected_to_fail(raw), tree
        assert all(".allow." in p or ".caps." in p for p in tree), tree
        return
    assert not expected_to_fail(raw)
    for index, config in enumerate(raw):
        tenant = tree[config["id"]]
        chain = chain_of(raw, index)
        assert tenant.chain == (ROOT, *(c["id"] for c in chain))
        for field in FIELDS:
            effective = tenant.permissions.allowed(field)
            lists = [set(c["allow"][field]) for c in chain if field in c["allow"]]
            assert effective == (set.intersection(*lists) if lists else None)
            for ancestor in tenant.chain[:-1]:
                above = tree[ancestor].permissions.allowed(field)
                assert above is None or (effective is not None and effective <= above)
        for cap in CAPS:
            value = tenant.permissions.cap(cap)
            caps = [c["caps"][cap] for c in chain if cap in c["caps"]]
            assert value == (min(caps) if caps else None)
            for ancestor in tenant.chain[:-1]:
                above = tree[ancestor].permissions.cap(cap)
                assert above is None or (value is not None and value <= above)
        merged: dict[str, Any] = {}
        for c in chain:
            merged.update(c["defaults"])
        assert dict(tenant.defaults) == merged


names = st.frozensets(st.sampled_from(["a", "b", "c", "d"]))
caps = st.none() | st.integers(1, 100)


@SETTINGS
@given(
    st.none() | names,
    caps,
    st.none() | names.map(sorted),
    caps,
    st.dictionaries(st.sampled_from(DEFAULT_KEYS), st.integers(0, 3)),
    st.dictionaries(st.sampled_from(DEFAULT_KEYS), st.booleans()),
)
def test_narrowing_never_widens(
    parent_models: frozenset[str] | None,
    parent_cap: int | None,
    own_models: list[str] | None,
    own_cap: int | None,
    parent_defaults: dict[str, Any],
    own_defaults: dict[str, Any],
) -> None:
    parent = Permissions(models=parent_models, max_tokens=parent_cap, defaults=parent_defaults)
    config = TenantConfig.model_validate(
        {
            "id": "child",
            "allow": {"models": own_models},
            "caps": {"max_tokens": own_cap},
            "defaults": own_defaults,
        }
    )
    child = narrow(parent, config)
    if parent_models is not None:
        assert child.models is not None and child.models <= parent_models
    if own_models is not None:
        assert child.models is not None and child.models <= set(own_models)
    else:
        assert child.models == parent_models
    if parent_cap is not None:
        assert child.max_tokens is not None and child.max_tokens <= parent_cap
    if own_cap is not None:
        assert child.max_tokens is not None and child.max_tokens <= own_cap
    assert child.max_tokens in (parent_cap, own_cap)
    assert dict(child.defaults) == {**parent_defaults, **own_defaults}


@st.composite
def parent_graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Tenants whose parents are any tenant (cycles and self-parents included), the
    root, nothing, or a name nobody has."""
    count = draw(st.integers(1, 8))
    ids = [f"t{i}" for i in range(count)]
    parents = st.sampled_from([*ids, None, ROOT, "ghost"])
    return [{"id": tenant_id, "parent": draw(parents)} for tenant_id in ids]


def reaches_root(raw: list[dict[str, Any]], tenant_id: str) -> bool:
    by_id = {t["id"]: t["parent"] for t in raw}
    seen: set[str] = set()
    node: str | None = tenant_id
    while node is not None and node != ROOT:
        if node in seen or node not in by_id:
            return False
        seen.add(node)
        node = by_id[node]
    return True


def cycles(raw: list[dict[str, Any]]) -> set[frozenset[str]]:
    """The members of each cycle of parents."""
    by_id = {t["id"]: t["parent"] for t in raw}
    found: set[frozenset[str]] = set()
    for start in by_id:
        path: list[str] = []
        node: str | None = start
        while node in by_id and node not in path:
            path.append(node)
            node = by_id[node]
        if node in path:
            found.add(frozenset(path[path.index(node) :]))
    return found


@SETTINGS
@given(parent_graphs())
def test_parents_either_form_a_tree_or_are_reported(raw: list[dict[str, Any]]) -> None:
    tree = build(raw)
    if isinstance(tree, list):
        assert not all(reaches_root(raw, t["id"]) for t in raw)
        # each cycle named once, each tenant naming the unknown parent once, nothing else
        named = [p for p in tree if "parents form a cycle" in p]
        assert {frozenset(p.split(": ")[-1].split(" -> ")) for p in named} == cycles(raw)
        assert len(named) == len(cycles(raw))
        orphans = [
            f"tenants[{i}].parent: unknown tenant 'ghost'"
            for i, t in enumerate(raw)
            if t["parent"] == "ghost"
        ]
        assert sorted(p for p in tree if p not in named) == sorted(orphans)
        return
    assert all(reaches_root(raw, t["id"]) for t in raw)
    parents = {t["id"]: t["parent"] or ROOT for t in raw}
    for tenant in tree:
        assert tenant.chain[0] == ROOT and tenant.chain[-1] == tenant.id
        if tenant.id != ROOT:
            assert tenant.parent == parents[tenant.id] == tenant.chain[-2]
        for other in tree:
            assert (other.id in tenant.subtree) == (tenant.id in other.chain)
            assert (other.id in tenant.children) == (other.parent == tenant.id)


tokens = st.text(
    st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12
).filter(lambda t: t.lower() != "bearer")


@SETTINGS
@given(
    st.lists(tokens, min_size=1, max_size=4, unique=True),
    st.one_of(st.none(), st.text(max_size=24), tokens.map(lambda t: f"Bearer {t}")),
)
def test_authentication_finds_exactly_the_key_whose_token_is_sent(
    known_tokens: list[str], header: str | None
) -> None:
    keys = [
        KeyConfig(id=f"k{i}", key_sha256=hashlib.sha256(token.encode()).hexdigest())
        for i, token in enumerate(known_tokens)
    ]
    tree = build([], keys)
    assert isinstance(tree, Tenants)
    scheme, _, rest = (header or "").partition(" ")
    sent = rest.strip() if scheme.lower() == "bearer" else None
    if not header:
        expected = MISSING_KEY
    elif not sent:
        expected = MALFORMED_HEADER
    else:
        expected = f"k{known_tokens.index(sent)}" if sent in known_tokens else INCORRECT_KEY
    assert authenticated(tree, header) == expected


def authenticated(tree: Tenants, header: str | None) -> str:
    """The key id `header` authenticates as, or the refusal's message."""
    try:
        return tree.authenticate(header).key_id
    except Unauthenticated as exc:
        return exc.message
