"""CEL types as the checker sees them: the declared attributes' types, and what each
expression yields.

`dyn` is "not known until evaluation". The checker refuses what would make a value
`dyn` in a rule (list or map literals mixing types, `?:` branches of different
types), so it arises only as the element type of an empty literal (`[]`, `{}`),
which `join` then takes from the other side. The checker never reports a problem
involving `dyn`; the compile-time trial evaluations cover those paths.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CelType:
    #: `bool`, `int`, `uint`, `double`, `string`, `bytes`, `null`, `list`, `map`, `dyn`.
    name: str
    #: A list's element type; a map's key and value types.
    params: tuple[CelType, ...] = ()

    def __str__(self) -> str:
        if self.params:
            return f"{self.name}({', '.join(str(p) for p in self.params)})"
        return self.name

    @property
    def element(self) -> CelType:
        """What iterating yields: a list's elements, a map's keys; `dyn` otherwise."""
        return self.params[0] if self.name in ("list", "map") else DYN

    @property
    def value(self) -> CelType:
        """What indexing yields: a list's elements, a map's values; `dyn` otherwise."""
        if self.name == "list":
            return self.params[0]
        if self.name == "map":
            return self.params[1]
        return DYN


BOOL = CelType("bool")
INT = CelType("int")
UINT = CelType("uint")
DOUBLE = CelType("double")
STRING = CelType("string")
BYTES = CelType("bytes")
NULL = CelType("null")
DYN = CelType("dyn")

NUMERIC = frozenset({"int", "uint", "double"})
#: Types `<`, `<=`, `>`, `>=` order (numbers also across each other).
ORDERED = frozenset({"int", "uint", "double", "string", "bytes", "bool"})
#: Types `+` joins: numbers of one type, text, and lists.
ADDABLE = frozenset({"int", "uint", "double", "string", "bytes", "list"})


def list_of(element: CelType) -> CelType:
    return CelType("list", (element,))


def map_of(key: CelType, value: CelType) -> CelType:
    return CelType("map", (key, value))


def is_dyn(kind: CelType) -> bool:
    return kind.name == "dyn"


def is_numeric(kind: CelType) -> bool:
    return kind.name in NUMERIC


def same(a: CelType, b: CelType) -> bool:
    """Could a value of `a` be used where `b` is expected (`dyn` fits anything)?"""
    if is_dyn(a) or is_dyn(b):
        return True
    if a.name != b.name or len(a.params) != len(b.params):
        return False
    return all(same(x, y) for x, y in zip(a.params, b.params, strict=True))


def comparable(a: CelType, b: CelType) -> bool:
    """May `a == b` hold? Numbers compare across types; `null` compares with anything.
    Otherwise the types must match, or the comparison is always false (a bug)."""
    if is_dyn(a) or is_dyn(b) or "null" in (a.name, b.name):
        return True
    if is_numeric(a) and is_numeric(b):
        return True
    if a.name != b.name:
        return False
    return all(comparable(x, y) for x, y in zip(a.params, b.params, strict=True))


def join(a: CelType, b: CelType) -> CelType:
    """The type of a value that is either `a` or `b` (list items, ternary branches, the
    two sides of a list `+`): `dyn` (an empty literal's elements) gives way to the
    other; types that differ otherwise join as `dyn` (callers that must not allow
    that check `same` first)."""
    if a == b or is_dyn(b):
        return a
    if is_dyn(a):
        return b
    if a.name == b.name and a.name in ("list", "map"):
        return CelType(a.name, tuple(join(x, y) for x, y in zip(a.params, b.params, strict=True)))
    return DYN
