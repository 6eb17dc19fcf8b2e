"""A string that matches a JSON Schema `pattern`, for the mock LLM's examples.

Structured-output models constrain strings with patterns (`constr(pattern=...)`,
codes, slugs, phone numbers), and the gateway checks a tool call's arguments
against the offered schema: an example that ignores the pattern is a violation a
real model would not have produced. So the pattern is read with Python's own regex
parser and walked once, taking the first allowed branch, the first allowed
character of each class and each repeat's minimum count (`grow` adds to every
repeat, tried again with more copies when the text is too short or fails). Each
try is checked with `re.search`, as JSON Schema matches patterns (unanchored);
lookarounds are not solved, only checked. A pattern Python cannot parse (ECMA-only
syntax such as `\\p{L}`) or that no try satisfies gives None, and the caller falls
back to plain text.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre
import re._parser as sre_parse
from typing import Any

#: Longer patterns are not walked: examples are for tests and demos, not fuzzing.
MAX_PATTERN_CHARS = 1_000
#: A repeat never contributes more than this many copies (`a{100000}` is not built).
MAX_REPEAT_COPIES = 64
#: An example longer than this is given up on.
MAX_EXAMPLE_CHARS = 4_096
#: Examples remembered (per pattern, variant and length bounds): at most ~5 MB.
MAX_CACHED_EXAMPLES = 1_024

#: What a character class category stands for, first choice first.
_CATEGORY_CHARS = {
    sre.CATEGORY_DIGIT: "0123456789",
    sre.CATEGORY_NOT_DIGIT: "abcxyz",
    sre.CATEGORY_SPACE: " \t",
    sre.CATEGORY_NOT_SPACE: "abcxyz0",
    sre.CATEGORY_WORD: "abcxyz0_",
    sre.CATEGORY_NOT_WORD: " -.",
    sre.CATEGORY_LINEBREAK: "\n",
    sre.CATEGORY_NOT_LINEBREAK: "abcxyz0",
}
#: Characters tried for a negated class or `.`, in order.
_FALLBACK_CHARS = "abcxyzABC0123456789 -_.@"


class _Unsatisfiable(Exception):
    """The walk met a construct it cannot produce text for."""


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[re.Pattern[str], Any] | None:
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        return re.compile(pattern), sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None


@functools.lru_cache(maxsize=MAX_CACHED_EXAMPLES)
def pattern_example(
    pattern: str, variant: int = 0, min_length: int = 0, max_length: int | None = None
) -> str | None:
    """A string `re.search(pattern, s)` accepts, within the length bounds, or None.

    `variant` picks other characters from classes, read as a mixed-radix number
    (one digit per class met), so variants 0, 1, 2, ... of one pattern differ as
    long as the pattern has that many strings of the walked length (arrays with
    `uniqueItems`)."""
    compiled = _compiled(pattern)
    if compiled is None:
        return None
    regex, parsed = compiled
    grow = 0
    while grow <= MAX_REPEAT_COPIES:
        try:
            text = _walk(parsed, _Variant(variant), grow)
        except (_Unsatisfiable, RecursionError):
            return None
        if len(text) > MAX_EXAMPLE_CHARS or (max_length is not None and len(text) > max_length):
            return None
        if len(text) >= min_length and regex.search(text):
            return text
        grow = grow * 2 or 1
    return None


class _Variant:
    """The variant's digits not yet spent on a choice."""

    __slots__ = ("rest",)

    def __init__(self, value: int) -> None:
        self.rest = value

    def pick(self, choices: str | list[str]) -> str:
        index = self.rest % len(choices)
        self.rest //= len(choices)
        return choices[index]


def _walk(parsed: Any, variant: _Variant, grow: int, groups: dict[int, str] | None = None) -> str:
    groups = {} if groups is None else groups
    out: list[str] = []
    for op, arg in parsed:
        if op is sre.LITERAL:
            out.append(chr(arg))
        elif op is sre.NOT_LITERAL:
            out.append(_first_char(lambda c, code=arg: ord(c) != code, variant))
        elif op is sre.ANY:
            out.append(variant.pick(_FALLBACK_CHARS))
        elif op is sre.IN:
            out.append(_class_char(arg, variant))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, item = arg
            if low > MAX_EXAMPLE_CHARS:
                raise _Unsatisfiable
            count = max(low, min(low + grow, high, MAX_REPEAT_COPIES))
            out.extend(_walk(item, variant, grow, groups) for _ in range(count))
        elif op is sre.SUBPATTERN:
            group, _add, _del, item = arg
            text = _walk(item, variant, grow, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op is sre.ATOMIC_GROUP:
            out.append(_walk(arg, variant, grow, groups))
        elif op is sre.BRANCH:
            _, alternatives = arg
            out.append(_walk(alternatives[0], variant, grow, groups))
        elif op is sre.GROUPREF:
            if arg not in groups:
                raise _Unsatisfiable
            out.append(groups[arg])
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            # Anchors and word boundaries produce no text; lookarounds are not
            # solved, the final `re.search` decides whether the text passes them.
            continue
        else:  # conditionals on groups: not attempted
            raise _Unsatisfiable
    return "".join(out)


def _class_char(items: list[tuple[Any, Any]], variant: _Variant) -> str:
    negate = bool(items) and items[0][0] is sre.NEGATE
    members = items[1:] if negate else items

    def inside(char: str) -> bool:
        code = ord(char)
        for op, arg in members:
            if op is sre.LITERAL and code == arg:
                return True
            if op is sre.RANGE and arg[0] <= code <= arg[1]:
                return True
            if op is sre.CATEGORY and char in _CATEGORY_CHARS.get(arg, ""):
                return True
        return False

    if negate:
        return _first_char(lambda c: not inside(c), variant)
    choices: list[str] = []
    for op, arg in members:
        if op is sre.LITERAL:
            choices.append(chr(arg))
        elif op is sre.RANGE:
            low, high = arg
            choices.extend(chr(c) for c in range(low, min(high, low + 9) + 1))
        elif op is sre.CATEGORY:
            choices.extend(_CATEGORY_CHARS.get(arg, ""))
    if not choices:
        raise _Unsatisfiable
    return variant.pick(choices)


def _first_char(allowed: Any, variant: _Variant) -> str:
    fitting = [c for c in _FALLBACK_CHARS if allowed(c)]
    if not fitting:
        raise _Unsatisfiable
    return variant.pick(fitting)
