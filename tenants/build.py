"""From `tenants:` and `keys:` to a flattened `Tenants`, or every problem at once.

`build_tenants` checks what no single model can: ids are unique, parents exist
and form no cycle, allow-lists name what the gateway has, and a child never
claims more than its parent. Then it flattens: every tenant's effective
permissions, limit levels and subtree, and every key's `Identity`, so a request
never walks the tree.

A child that names more than its parent allows is an error, never narrowed in
silence. Quietly intersecting would hide typos (`gpt-4o-mini` where the parent
says `gpt4o-mini`) and surprise whoever wrote the child, who reads a model in
their own tenant's list and cannot use it. The effective set is still the
intersection (a child can never exceed its parent, whatever the config says);
the error makes the config say so too. Caps follow the same rule.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from common.config import DocumentError
from tenants.config import ROOT, KeyConfig, TenantConfig
from tenants.identity import Identity, LimitLevel
from tenants.keys import token_tag
from tenants.known import Known
from tenants.permissions import ALLOW_FIELDS, CAP_FIELDS, UNRESTRICTED, Permissions, narrow
from tenants.tree import Tenant, Tenants

#: Levels below the root a tenant may sit at. Each level's limits are checked on every
#: request of every tenant below it, so depth is a per-request cost; org > team >
#: project is 3, and nothing real needs more than a handful.
MAX_DEPTH = 16
#: Names quoted in one problem message (what a parent allows) before it is cut short.
MAX_LISTED_NAMES = 10

_Configs = Mapping[str, tuple[int, TenantConfig]]


class TenantsError(DocumentError):
    """Tenants or keys that cannot be served; `problems` lists each as `path: reason`."""

    kind = "tenants"


def build_tenants(
    tenants: Sequence[TenantConfig],
    keys: Sequence[KeyConfig],
    known: Known,
    source: str = "<config>",
) -> Tenants:
    """The flattened tree of `tenants` with an identity for each of `keys`.

    `known` says what exists elsewhere in the config (model groups, tools,
    deployments, chaos targets). Raises `TenantsError` listing every problem, with
    paths as the config spells them (`tenants[2].parent`, `keys[0].tenant`). A child
    naming more than its parent allows, or capping above it, is one of them, not a
    silent narrowing (the module docstring says why)."""
    problems: list[str] = []
    configs = _index(tenants, problems)
    for index, config in enumerate(tenants):
        problems += _unknown_names(index, config, known)
    chains = _chains(configs, problems)
    flattened = _flatten(configs, chains, known, problems)
    identities = _identities(keys, configs, flattened, problems)
    if problems:
        raise TenantsError(source, problems)
    return Tenants(flattened, identities)


def tenant_problems(
    tenants: Sequence[TenantConfig], keys: Sequence[KeyConfig], known: Known
) -> list[str]:
    """`build_tenants`'s problems, or `[]`: for a config check that reports, not raises."""
    try:
        build_tenants(tenants, keys, known)
    except TenantsError as exc:
        return exc.problems
    return []


def _index(
    tenants: Sequence[TenantConfig], problems: list[str]
) -> dict[str, tuple[int, TenantConfig]]:
    """Tenants by id, the first of each id; later ones are reported as duplicates."""
    configs: dict[str, tuple[int, TenantConfig]] = {}
    for index, config in enumerate(tenants):
        first = configs.get(config.id)
        if config.id == ROOT:  # TenantConfig refuses it; a model built unvalidated may not
            problems.append(f"tenants[{index}].id: {ROOT!r} is the implicit root tenant")
        elif first is not None:
            problems.append(
                f"tenants[{index}].id: duplicate tenant id {config.id!r} "
                f"(first at tenants[{first[0]}])"
            )
        else:
            configs[config.id] = (index, config)
    return configs


def _unknown_names(index: int, config: TenantConfig, known: Known) -> list[str]:
    problems = []
    for field, noun in ALLOW_FIELDS.items():
        names: tuple[str, ...] | None = getattr(config.allow, field)
        valid = known.names(field)
        seen: set[str] = set()
        for position, name in enumerate(names or ()):
            path = f"tenants[{index}].allow.{field}[{position}]"
            if name in seen:
                problems.append(f"{path}: {noun} {name!r} is listed twice")
            elif not known.knows(field, name):
                problems.append(f"{path}: unknown {noun} {name!r}{_hint(name, valid)}")
            seen.add(name)
    return problems


def _parent(config: TenantConfig) -> str:
    return config.parent if config.parent is not None else ROOT


def _chains(configs: _Configs, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """The chain from the root of every tenant that reaches the root. Unknown parents,
    cycles and trees too deep are reported once each; tenants below them have no
    chain (and nothing more is reported about them: their ancestor's problem is the
    one to fix)."""
    chains: dict[str, tuple[str, ...]] = {ROOT: (ROOT,)}
    broken: set[str] = set()
    for start in configs:
        path: list[str] = []  # from `start` upwards
        position: dict[str, int] = {}
        node = start
        while node not in chains and node not in broken:
            if node in position:
                problems.append(_cycle_problem(path[position[node] :], configs))
                broken.update(path)
                break
            position[node] = len(path)
            path.append(node)
            index, config = configs[node]
            parent = _parent(config)
            if parent != ROOT and parent not in configs:
                problems.append(
                    f"tenants[{index}].parent: unknown tenant {parent!r}"
                    f"{_hint(parent, (t for t in configs if t != node), '')}"
                )
                broken.add(node)
                break
            node = parent
        if node in broken:
            broken.update(path)
            continue
        for depth, member in enumerate(reversed(path), start=len(chains[node])):
            if depth > MAX_DEPTH:
                index = configs[member][0]
                problems.append(
                    f"tenants[{index}].parent: {member!r} would be {depth} levels below the "
                    f"root; the tree is at most {MAX_DEPTH} levels deep"
                )
                broken.update(path[: position[member] + 1])
                break
            chains[member] = (*chains[_parent(configs[member][1])], member)
    return chains


def _cycle_problem(cycle: list[str], configs: _Configs) -> str:
    """Reported at the cycle's first tenant in the config, which also starts the loop."""
    first = min(range(len(cycle)), key=lambda i: configs[cycle[i]][0])
    loop = [*cycle[first:], *cycle[:first]]
    arrows = " -> ".join([*loop, loop[0]])
    return f"tenants[{configs[loop[0]][0]}].parent: parents form a cycle: {arrows}"


def _flatten(
    configs: _Configs,
    chains: Mapping[str, tuple[str, ...]],
    known: Known,
    problems: list[str],
) -> dict[str, Tenant]:
    """A `Tenant` for the root and every tenant with a chain, parents before children."""
    order = sorted(chains, key=lambda t: (len(chains[t]), configs[t][0] if t in configs else -1))
    permissions: dict[str, Permissions] = {ROOT: UNRESTRICTED}
    levels: dict[str, tuple[LimitLevel, ...]] = {ROOT: ()}
    subtrees: dict[str, set[str]] = {t: set() for t in order}
    children: dict[str, list[str]] = {t: [] for t in order}
    for tenant_id in order:
        chain = chains[tenant_id]
        for ancestor in chain:
            subtrees[ancestor].add(tenant_id)
        if tenant_id == ROOT:
            continue
        parent = chain[-2]
        children[parent].append(tenant_id)
        index, config = configs[tenant_id]
        problems += _exceeds(index, config, parent, permissions[parent], known)
        permissions[tenant_id] = narrow(permissions[parent], config)
        own = config.limits
        levels[tenant_id] = (
            (*levels[parent], (f"tenant:{tenant_id}", own))
            if own is not None and not own.empty
            else levels[parent]
        )
    return {
        tenant_id: Tenant(
            id=tenant_id,
            parent=chains[tenant_id][-2] if tenant_id != ROOT else None,
            chain=chains[tenant_id],
            children=tuple(children[tenant_id]),
            subtree=frozenset(subtrees[tenant_id]),
            permissions=permissions[tenant_id],
            limit_levels=levels[tenant_id],
            metadata=MappingProxyType(dict(configs[tenant_id][1].metadata))
            if tenant_id in configs
            else MappingProxyType({}),
        )
        for tenant_id in order
    }


def _exceeds(
    index: int, config: TenantConfig, parent: str, inherited: Permissions, known: Known
) -> list[str]:
    """What `config` claims beyond its parent's effective permissions. Names the
    gateway does not have are left out: `_unknown_names` reports them."""
    problems = []
    for field, noun in ALLOW_FIELDS.items():
        names: tuple[str, ...] | None = getattr(config.allow, field)
        allowed = inherited.allowed(field)
        if names is None or allowed is None:
            continue
        for position, name in enumerate(names):
            if known.knows(field, name) and name not in allowed:
                problems.append(
                    f"tenants[{index}].allow.{field}[{position}]: {noun} {name!r} is not "
                    f"allowed by parent {parent!r} (it allows: {_listing(allowed)})"
                )
    for field in CAP_FIELDS:
        own: int | None = getattr(config.caps, field)
        cap = inherited.cap(field)
        if own is not None and cap is not None and own > cap:
            problems.append(
                f"tenants[{index}].caps.{field}: {own} is above the cap of parent "
                f"{parent!r} ({cap})"
            )
    return problems


def _identities(
    keys: Sequence[KeyConfig],
    configs: _Configs,
    tenants: Mapping[str, Tenant],
    problems: list[str],
) -> dict[str, Identity]:
    """Each key's identity by the sha256 hex of its token."""
    by_digest: dict[str, Identity] = {}
    first_id: dict[str, int] = {}
    first_digest: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key.id in first_id:
            problems.append(
                f"keys[{index}].id: duplicate key id {key.id!r} (first at keys[{first_id[key.id]}])"
            )
        else:
            first_id[key.id] = index
        digest = key.digest
        if digest in first_digest:
            other = first_digest[digest]
            problems.append(
                f"keys[{index}]: same token as keys[{other}] ({keys[other].id!r}); "
                "a token must identify one key"
            )
            continue
        first_digest[digest] = index
        tenant_id = key.tenant if key.tenant is not None else ROOT
        tenant = tenants.get(tenant_id)
        if tenant is None:
            if tenant_id not in configs:
                problems.append(
                    f"keys[{index}].tenant: unknown tenant {tenant_id!r}{_hint(tenant_id, configs)}"
                )
            continue  # a tenant under a broken parent: that problem is already reported
        levels = tenant.limit_levels
        if key.limits is not None and not key.limits.empty:
            levels = (*levels, (f"key:{key.id}", key.limits))
        by_digest[digest] = Identity(
            key_id=key.id,
            tenant_id=tenant.id,
            chain=tenant.chain,
            roles=frozenset(key.roles),
            permissions=tenant.permissions,
            limit_levels=levels,
            scope=tenant.subtree,
            token_tag=token_tag(digest),
        )
    return by_digest


def _hint(name: str, valid: Iterable[str], when_empty: str = " (none configured)") -> str:
    """A close match to suggest for a misspelt `name`, if there is one."""
    names = list(valid)
    if not names:
        return when_empty
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    if not ordered:
        return "nothing"
    shown = ", ".join(ordered[:MAX_LISTED_NAMES])
    more = len(ordered) - MAX_LISTED_NAMES
    return f"{shown}, and {more} more" if more > 0 else shown
