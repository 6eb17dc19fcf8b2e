"""A compile-time upper bound on what evaluating a rule costs, in steps.

An evaluation inside the CEL library cannot be interrupted, so a rule that could
run long must be refused before it ever runs. The library has no cost limit of its
own, so seawall estimates one from the syntax tree, as cel-go does: every attribute
is assumed at its size limit (`policies.attributes`), a literal list at its length,
and then

- a name, literal, operator or call costs 1 step; a list literal 1 more per item,
  a map literal 2 more per entry;
- `matches` costs `MATCH_CALL_STEPS`, plus, per character of its subject (a string
  is assumed at its limit too: an attribute's, the sum of a `+`'s operands, a
  literal's length), `MATCH_CHAR_NS` and `MATCH_INSTRUCTION_NS` per instruction of
  the compiled pattern (`policies.patterns`): RE2's worst case, its NFA, measured on
  subjects built to defeat its DFA (bench/regex_cost.py; the table is in the docs);
- `in`, `==` and `!=` over a list cost 1 more per 8 items; `+` of lists 3 per item;
- `all`/`exists`/`exists_one` over n items cost n * (`ITERATION_STEPS` + the body's);
- `map`/`filter` cost that plus 3n²/2: the library copies its accumulated result on
  every iteration, so its time grows with the square of the range (measured: 1-2 ms
  for 128 items, 13 ms for 490).

One step is about 0.1 µs on the reference machine (2 cores, shared): an iteration
of `exists` measured 0.5-1 µs, string predicates and comparisons 0.05-0.1 µs, so the
bound is near for comprehensions and over-estimates the rest; bench/cel_libraries.py
prints estimates beside measured times. A rule may cost at most `MAX_RULE_STEPS`,
and the rules that apply to one tenant together at most `MAX_CHAIN_STEPS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from policies.attributes import MAX_STRING, SPECS
from policies.syntax import (
    Call,
    Comprehension,
    Ident,
    Index,
    ListExpr,
    Literal,
    MapExpr,
    Node,
    Select,
)

#: The most one rule may cost: about 0.5 ms at the reference machine's rate, half
#: the default evaluation budget. `tools.exists(t, t.startsWith("x"))` costs 1409;
#: `filter` over all 128 tools (26,000) is refused, over `roles` (16) is not.
MAX_RULE_STEPS = 5000
#: The most the rules applying to one tenant (its chain's) may cost together: ~5 ms.
MAX_CHAIN_STEPS = 50_000
#: One iteration of a comprehension, besides its body.
ITERATION_STEPS = 8
#: Nanoseconds one step stands for (the reference machine's rate, see above).
STEP_NS = 100
#: What one `matches` call costs before its subject is read: the library calling
#: seawall's function with the subject, and encoding it (~2 µs for 1024 characters).
MATCH_CALL_STEPS = 30
#: What a `matches` costs per subject character, and per character and instruction
#: of the pattern's program, at worst (bench/regex_cost.py).
MATCH_CHAR_NS = 20.0
MATCH_INSTRUCTION_NS = 24.0
#: Characters of `string(x)` for a number (`-9223372036854775808` is 20).
NUMBER_CHARS = 32


@dataclass(frozen=True, slots=True)
class Size:
    """An upper bound on a list's items (or a map's entries), and on its elements' size."""

    entries: int
    element: Size | Text | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """An upper bound on a string's length, in characters."""

    chars: int


#: What is known about a value's size: a list's or map's (`Size`), a string's
#: (`Text`), or nothing (numbers, booleans).
Bound = Size | Text | None


@dataclass(frozen=True, slots=True)
class Cost:
    steps: int
    #: Why the cost has no bound (a range whose size is unknown), or `None`.
    unbounded: str | None = None


def estimate(tree: Node, program_sizes: Mapping[str, int] | None = None) -> Cost:
    """The most evaluating `tree` can cost, in steps. `program_sizes` are the program
    sizes of its `matches` patterns; one not given is compiled (`policies.patterns`)."""
    walk = _Walk(program_sizes or {}, [])
    steps, _ = _walk(tree, {}, walk)
    return Cost(steps, walk.problems[0] if walk.problems else None)


def matches_steps(chars: int, program: int) -> int:
    """What one `matches` costs on a subject of `chars` characters with a pattern of
    `program` instructions, in steps."""
    nanoseconds = chars * (MATCH_CHAR_NS + MATCH_INSTRUCTION_NS * program)
    return MATCH_CALL_STEPS + math.ceil(nanoseconds / STEP_NS)


def _attribute_size(name: str) -> Bound:
    spec = SPECS.get(name)
    if spec is None or spec.limit is None:
        return None
    if spec.cel_type.name == "string":
        return Text(spec.limit)
    # lists of strings, and `headers` (names of at most 64 characters, values of MAX_STRING)
    return Size(spec.limit, Text(MAX_STRING))


def _larger(a: Bound, b: Bound) -> Bound:
    if a is None or b is None:
        return a or b
    if isinstance(a, Text) and isinstance(b, Text):
        return Text(max(a.chars, b.chars))
    if isinstance(a, Size) and isinstance(b, Size):
        return Size(max(a.entries, b.entries), _larger(a.element, b.element))
    return a if isinstance(a, Size) else b  # values of different kinds: the checker refuses


@dataclass(slots=True)
class _Walk:
    """What a walk needs besides the node: the patterns' program sizes, and where to
    put why a cost has no bound."""

    program_sizes: Mapping[str, int]
    problems: list[str]

    def program_size(self, pattern: str) -> int:
        size = self.program_sizes.get(pattern)
        if size is not None:
            return size
        from policies.patterns import program_size  # the library: a config with rules

        return program_size(pattern)


def _walk(node: Node, scope: Mapping[str, Bound], walk: _Walk) -> tuple[int, Bound]:
    """`(steps, bound)`: the cost of `node`, and a bound on its size if it is a list,
    map or string."""
    if isinstance(node, Literal):
        value = node.value
        return 1, Text(len(value)) if isinstance(value, str | bytes) else None
    if isinstance(node, Ident):
        return 1, scope[node.name] if node.name in scope else _attribute_size(node.name)
    if isinstance(node, Select | Index):
        steps, size = _walk(node.operand, scope, walk)
        if isinstance(node, Index):
            steps += _walk(node.index, scope, walk)[0]
        return steps + 1, size.element if isinstance(size, Size) else None
    if isinstance(node, ListExpr):
        steps, element = 1 + len(node.items), None
        for item in node.items:
            item_steps, item_size = _walk(item, scope, walk)
            steps += item_steps
            element = _larger(element, item_size)
        return steps, Size(len(node.items), element)
    if isinstance(node, MapExpr):
        steps, element, keys = 1 + 2 * len(node.entries), None, None
        for key, value in node.entries:
            key_steps, key_size = _walk(key, scope, walk)
            value_steps, value_size = _walk(value, scope, walk)
            steps += key_steps + value_steps
            element, keys = _larger(element, value_size), _larger(keys, key_size)
        # `element` bounds what indexing yields (values) and what a macro's variable
        # is bound to (keys): the larger of the two when both are strings
        if element is None or isinstance(element, Text):
            element = _larger(element, keys)
        return steps, Size(len(node.entries), element)
    if isinstance(node, Comprehension):
        return _comprehension(node, scope, walk)
    assert isinstance(node, Call)
    return _call(node, scope, walk)


def _comprehension(
    node: Comprehension, scope: Mapping[str, Bound], walk: _Walk
) -> tuple[int, Bound]:
    range_steps, size = _walk(node.range, scope, walk)
    if not isinstance(size, Size):
        walk.problems.append(f"{node.macro}() ranges over a value whose size has no known bound")
        return range_steps, None
    inner = {**scope, node.variable: size.element}
    body_steps = 0
    body_size: Bound = None
    for arg in node.args:
        arg_steps, body_size = _walk(arg, inner, walk)
        body_steps += arg_steps
    steps = range_steps + size.entries * (ITERATION_STEPS + body_steps)
    if node.macro in ("map", "filter"):
        steps += 3 * size.entries * size.entries // 2
    if node.macro == "map":
        return steps, Size(size.entries, body_size)
    if node.macro == "filter":
        return steps, size
    return steps, None


def _call(node: Call, scope: Mapping[str, Bound], walk: _Walk) -> tuple[int, Bound]:
    steps = 1
    sizes: list[Bound] = []
    for operand in (node.target, *node.args):
        if operand is not None:
            operand_steps, operand_size = _walk(operand, scope, walk)
            steps += operand_steps
            sizes.append(operand_size)
    function = node.function
    if function == "matches":
        return steps + _matches(node, sizes[0], walk), None
    if function in ("@in", "_==_", "_!=_"):
        largest = max((s.entries for s in sizes if isinstance(s, Size)), default=0)
        return steps + -(-largest // 8), None
    if function == "_+_" and len(sizes) == 2:
        left, right = sizes
        if isinstance(left, Size) and isinstance(right, Size):
            total = left.entries + right.entries
            return steps + 3 * total, Size(total, _larger(left.element, right.element))
        if isinstance(left, Text) and isinstance(right, Text):
            return steps, Text(left.chars + right.chars)
    if function == "_?_:_":
        return steps, _larger(sizes[1], sizes[2]) if sizes[1] and sizes[2] else None
    if function == "string" and len(sizes) == 1:
        return steps, sizes[0] if isinstance(sizes[0], Text) else Text(NUMBER_CHARS)
    return steps, None


def _matches(node: Call, subject: Bound, walk: _Walk) -> int:
    """What `subject.matches(pattern)` costs beyond its operands."""
    pattern = node.args[0]
    if not isinstance(subject, Text):
        walk.problems.append("matches() is called on a string whose length has no known bound")
        return 0
    if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
        walk.problems.append("matches() has a pattern that is not a string literal")
        return 0
    return matches_steps(subject.chars, walk.program_size(pattern.value))
