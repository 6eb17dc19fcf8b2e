"""JSON Schema validation for tool arguments and results, with limits.

Validators are compiled once: registered tools at start-up, schemas offered in
requests on first sight (agents send the same tool list with every request, so a
small cache keyed by the schema's canonical text serves nearly every call). The
schemas offered in requests are cached per tenant (`TenantSchemaCaches`): one
tenant's flood of schemas evicts only its own (a sibling's would otherwise be
compiled again, milliseconds each, on the victim's requests), and how fast a schema
is accepted tells no tenant whether another offered it.

Schemas may come from clients, so validation is bounded three ways: values nested
deeper than `MAX_DEPTH` are refused, schemas whose `$ref`s loop without consuming
input are refused when compiled (`tools.refcycles`), and `pattern`s match under a
time limit (`tools.patterns`).

jsonschema (with the format checkers it loads: ~100 modules, ~5 MB) is imported on
first use, not with this module: a config that registers tools compiles their schemas
at start-up; one that registers none needs it only when a reply calls a tool the
request offered, and the first such reply pays the import once (docs/performance.md,
"Start-up and idle memory"). `depth_exceeds`, which every request runs, needs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

from tools.refcycles import reference_cycle

if TYPE_CHECKING:
    import jsonschema
    import referencing
    from jsonschema.protocols import Validator

#: Values nested deeper than this are refused before validation: jsonschema
#: recurses per level, and a deep enough value would end in a RecursionError.
MAX_DEPTH = 64
#: At most this many problems are reported per value.
MAX_ERRORS = 10
_CACHE_SIZE = 256
#: Offered schemas kept per tenant, and tenants whose schemas are kept, at most: 64
#: covers three agents of twenty tools each; past 32 tenants the least recently seen
#: tenant's are forgotten (compiled again when offered again: a cost, never a wrong
#: answer). And at most 128 KiB of schema text per tenant (~400 schemas of 330
#: bytes): compiled, ~2.5 MB per tenant, ~80 MB per worker at the very most.
SCHEMAS_PER_TENANT = 64
SCHEMA_BYTES_PER_TENANT = 128 * 1024
MAX_TENANTS = 32


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a value fails its schema: where (a JSON path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest deeper than `limit`; stops as soon as they do.

    Level by level, touching each container once: on request bodies this runs for
    every request, so it avoids per-node tuples and isinstance chains (measured:
    0.5 us for a one-message chat, 12 us for a hundred messages).
    """
    level = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper = []
        for node in level:
            kind = type(node)
            children = node.values() if kind is dict else node if kind is list else ()
            for child in children:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        level = deeper
        depth += 1
    return False


def remote_references(schema: Any) -> list[str]:
    """`$ref`s that point outside the schema document (they are never fetched)."""
    found, stack = [], [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    if not value.startswith("#"):
                        found.append(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


class UnsafeSchema(ValueError):
    """A schema validation could never finish with: refused, never skipped."""


def check_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON Schema 2020-12 document, or a config error saying what is wrong."""
    if schema is None:
        return None
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
    except RecursionError:  # the metaschema recurses per level of the schema
        raise UnsafeSchema("the schema is nested too deeply to be checked") from None
    remote = remote_references(schema)
    if remote:
        raise ValueError(
            f"$ref {remote[0]!r} points outside the schema: only local references "
            "('#/...') are supported, remote ones are never fetched"
        )
    cycle = reference_cycle(schema)
    if cycle:
        raise UnsafeSchema(
            f"$ref cycle {' -> '.join(cycle)} applies the schema to the same value "
            "forever: a reference must pass through a keyword such as properties or "
            "items before it comes back"
        )
    return schema


@cache
def no_remote_references() -> referencing.Registry[Any]:
    """An empty registry: `$ref`s resolve within the schema only. Without it jsonschema
    falls back to fetching remote references with a blocking urlopen, which from a
    client-offered schema is a server-side request forgery."""
    import referencing

    return referencing.Registry()


@cache
def _timed_patterns(cls: type[Validator]) -> type[Validator]:
    """`cls` with `pattern` and friends matching under a time limit (one class per
    draft, made once)."""
    import jsonschema.validators

    from tools import patterns

    keywords = {k: f for k, f in patterns.KEYWORDS.items() if k in cls.VALIDATORS}
    extended: type[Validator] = jsonschema.validators.extend(cls, keywords)
    return extended


def compile_schema(schema: dict[str, Any]) -> Validator:
    import jsonschema.validators

    cls = _timed_patterns(
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    )
    return cls(schema, format_checker=cls.FORMAT_CHECKER, registry=no_remote_references())


class SchemaCache:
    """Compiled validators for schemas seen in requests, least recently used out:
    at most `size` of them and, with `max_bytes`, at most that much schema text (a
    compiled schema takes ~20 times its text: 6.3 KB for a 330-byte one). A schema
    longer than `max_bytes` on its own is compiled each time it is offered, never
    kept."""

    def __init__(self, size: int = _CACHE_SIZE, max_bytes: int | None = None) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._entries: OrderedDict[bytes, Validator | UnsafeSchema | None] = OrderedDict()
        #: The schema text of the entries, in bytes.
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, schema: Any) -> Validator | None:
        """The validator, or None when the schema is not valid JSON Schema or is
        unsafe (`lookup` tells the two apart)."""
        try:
            return self.lookup(schema)
        except UnsafeSchema:
            return None

    def lookup(self, schema: Any) -> Validator | None:
        """The validator; None for a schema that is not valid JSON Schema (callers
        skip it); `UnsafeSchema` for one validation could never finish with."""
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)
            entry = entries[key]
        else:
            entry = self._compile(schema)
            limit = self._max_bytes
            if limit is None or len(key) <= limit:
                entries[key] = entry
                self.bytes += len(key)
                while len(entries) > self._size or (limit is not None and self.bytes > limit):
                    old, _ = entries.popitem(last=False)
                    self.bytes -= len(old)
        if isinstance(entry, UnsafeSchema):
            raise entry
        return entry

    @staticmethod
    def _compile(schema: Any) -> Validator | UnsafeSchema | None:
        try:
            check_schema(schema)
            return compile_schema(schema)
        except UnsafeSchema as exc:
            return exc
        except (ValueError, TypeError):  # invalid, or a remote $ref
            return None


class TenantSchemaCaches:
    """A `SchemaCache` per tenant, for the schemas requests offer; the least recently
    seen tenant's is forgotten past `max_tenants`."""

    def __init__(
        self,
        per_tenant: int = SCHEMAS_PER_TENANT,
        max_tenants: int = MAX_TENANTS,
        bytes_per_tenant: int = SCHEMA_BYTES_PER_TENANT,
    ) -> None:
        self.per_tenant = per_tenant
        self.max_tenants = max_tenants
        self.bytes_per_tenant = bytes_per_tenant
        self._caches: OrderedDict[Hashable, SchemaCache] = OrderedDict()

    def __len__(self) -> int:
        return len(self._caches)

    def of(self, tenant: Hashable) -> SchemaCache:
        """`tenant`'s cache (made on its first offered schema)."""
        caches = self._caches
        cache = caches.get(tenant)
        if cache is None:
            cache = caches[tenant] = SchemaCache(self.per_tenant, self.bytes_per_tenant)
            if len(caches) > self.max_tenants:
                caches.popitem(last=False)
        else:
            caches.move_to_end(tenant)
        return cache


def problems(validator: Validator, value: Any) -> list[Problem]:
    """Why `value` fails `validator`, most useful first; empty when it is valid."""
    if depth_exceeds(value):
        return [Problem("$", f"nested deeper than {MAX_DEPTH} levels")]
    import referencing.exceptions

    from tools import patterns

    found = []
    try:
        with patterns.budget():
            for error in _errors(validator, value):
                found.append(Problem(error.json_path, error.message[:300]))
                if len(found) >= MAX_ERRORS:
                    break
    except referencing.exceptions.Unresolvable as exc:
        return [Problem("$", f"the schema has a $ref that cannot be resolved ({exc})"[:300])]
    except RecursionError:
        # A backstop: compiled schemas have no same-value $ref cycle, but a schema
        # nested deeply enough (or a cycle the check could not see) still recurses.
        return [Problem("$", "the schema recurses too deeply to validate this value")]
    return found


def _errors(validator: Validator, value: Any) -> Iterator[jsonschema.ValidationError]:
    errors = sorted(validator.iter_errors(value), key=lambda e: (len(e.path), e.json_path))
    yield from errors
