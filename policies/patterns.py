"""The regular expressions of `matches`: literal, compiled once, matched in linear time.

The CEL library implements `matches` by compiling its pattern on every call (Rust's
`regex`, Unicode-aware): `\\w{90}` took 35 ms to compile, twice per request, and a
pattern read from a request header let a caller choose what the gateway compiled.
So a rule's pattern must be a string literal (`policies.checker`), compiled here once
when the rule set is built, and seawall evaluates `x.matches('...')` itself: the
compiler rewrites the call as `x.<function>()` (`policies.expression`), a function
registered with the library that runs the precompiled pattern.

The engine is RE2 (`google-re2`): linear in the subject (O(subject x program) at
worst, its NFA; usually one table lookup a byte, its DFA), bounded in memory, and
the dialect CEL specifies. Its matching is an unanchored search, as CEL's `matches`.

The CEL library reads the same syntax a little differently in places, and a rule
must decide the same under either (a property test holds the two together), so a
pattern is refused when it

- does not compile in RE2, or in the CEL library's own engine;
- uses `\\d \\D \\w \\W \\s \\S \\b \\B`: ASCII in RE2, Unicode in the library (write
  `[0-9]`, `[[:word:]]`, `[[:space:]]`, or `\\p{Nd}`, `\\pL` for Unicode);
- uses `\\<` or `\\>` (a word boundary in the library, a literal in RE2);
- uses a Unicode class other than a general category (`\\pL`, `\\p{Lu}`...): scripts
  are matched by script extensions in one engine and by script in the other;
- nests a class or uses `&&`, `--`, `~~` inside one (set operations in the library,
  literal characters in RE2; escape them);
- compiles to more than `MAX_PROGRAM_SIZE` instructions.

What one match costs is charged by `policies.cost` from the program size and the
subject's length (the measured table is in docs/tenants-and-policies.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2

from policies.library import cel

#: Instructions a compiled pattern may have: a memory bound (RE2 keeps ~16 bytes an
#: instruction) and, with the subject's length, what a match costs (`policies.cost`).
#: `^[a-z]+-[0-9]+$` has 7, `\\w{90}` 274 (before `\\w` was refused), `\\pL` 1200.
MAX_PROGRAM_SIZE = 1000
#: Bytes RE2 may use for one pattern: its program (2/3) and its two DFA caches. A DFA
#: that runs out of room resets its cache, or gives up for the NFA, which the cost
#: model charges for anyway. Small on purpose: a reset frees every cached state, and
#: with RE2's default 8 MiB one reset took 8 ms for `[ab]*a[ab]{16}z`; at 256 KiB the
#: worst call measured 0.4 ms (bench/regex_cost.py). Bounds memory too.
MAX_MEMORY = 1 << 18
#: Prefix of the functions `x.matches('...')` becomes; not an identifier a rule can
#: call (the checker knows only `checker.FUNCTIONS`).
FUNCTION_PREFIX = "__seawall_matches_"
#: The Unicode classes allowed (`\\pL`, `\\p{Lu}`, `\\PN`...): general categories, on
#: which both engines agree. `C` and `Cn` are left out: one engine counts unassigned
#: code points in them, the other does not.
GENERAL_CATEGORIES = frozenset(
    {"Any", "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No"}
    | {"P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So"}
    | {"Z", "Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cs"}
)

_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)
#: The CEL library's own `matches`, to check a pattern compiles in its engine too.
_LIBRARY_MATCHES = cel.compile("subject.matches(pattern)")
_PERL_CLASSES = {
    "d": "`[0-9]` (ASCII) or `\\p{Nd}` (Unicode)",
    "D": "`[^0-9]` or `\\P{Nd}`",
    "w": "`[[:word:]]` (ASCII) or a class of `\\pL`, `\\pN`... (Unicode)",
    "W": "`[^[:word:]]`",
    "s": "`[[:space:]]` (ASCII) or `\\pZ` (Unicode)",
    "S": "`[^[:space:]]`",
    "b": "the neighbours, e.g. `(^|[^[:word:]])word([^[:word:]]|$)`",
    "B": "the neighbours, e.g. `[[:word:]]x[[:word:]]`",
}


class PatternError(ValueError):
    """A pattern that cannot be used; the message says why."""


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.never_capture = True  # only whether it matches is wanted
    options.log_errors = False  # a refused pattern is a config problem, not a log line
    return options


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """One compiled pattern; calling it is `subject.matches(source)`."""

    source: str
    #: RE2's program size, in instructions: what a match costs per subject character.
    program_size: int
    #: The name the CEL library calls it by (the same for the same source).
    function_name: str
    _regexp: Any = field(repr=False)

    def __call__(self, subject: str) -> bool:
        # The pybind object, not `re2.search`: the wrapper builds a Match object and
        # maps byte offsets back to characters, ~1 µs more per call for nothing.
        encoded = subject.encode()
        spans = self._regexp.Match(_UNANCHORED, encoded, 0, len(encoded))
        return bool(spans[0] != _NO_MATCH)


@lru_cache(maxsize=256)
def compile_pattern(source: str) -> Pattern:
    """`source` compiled, or `PatternError` with the reason. Cached: a reloaded config
    with the same patterns compiles none again (at most 256 kept, so at most 64 MiB
    of RE2 memory beyond what the serving rule sets hold)."""
    problem = dialect_problem(source)
    if problem is not None:
        raise PatternError(problem)
    regexp = re2._re2.RE2(source.encode(), _options())
    if not regexp.ok():
        raise PatternError(f"invalid regular expression: {regexp.error().decode()}")
    size = int(regexp.ProgramSize())
    if size > MAX_PROGRAM_SIZE:
        raise PatternError(
            f"the regular expression compiles to {size} instructions, over the limit of "
            f"{MAX_PROGRAM_SIZE}"
        )
    try:
        _LIBRARY_MATCHES.execute({"subject": "", "pattern": source})
    except Exception as exc:
        detail = " ".join(str(exc).split())[:160]
        raise PatternError(
            f"the CEL library's regular expression engine refuses it: {detail}"
        ) from None
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return Pattern(source, size, FUNCTION_PREFIX + digest, regexp)


def program_size(source: str) -> int:
    """The program size of `source`, or `MAX_PROGRAM_SIZE` when it cannot be compiled
    (such a pattern is refused anyway; the cost bound never guesses low)."""
    try:
        return compile_pattern(source).program_size
    except PatternError:
        return MAX_PROGRAM_SIZE


def dialect_problem(source: str) -> str | None:
    """Why `source` would not mean the same in RE2 and in the CEL library's engine, or
    `None`. Reads escapes and classes only; RE2 then checks the rest of the syntax."""
    index, length = 0, len(source)
    class_start = -1  # index of the first member of the class being read, or -1
    while index < length:
        char = source[index]
        if char == "\\":
            escape = source[index + 1 : index + 2]
            if escape in _PERL_CLASSES:
                return (
                    f"'\\{escape}' means ASCII in RE2 (CEL's dialect) but Unicode in the CEL "
                    f"library, so rules would decide differently; write {_PERL_CLASSES[escape]}"
                )
            if escape in ("<", ">"):
                return (
                    f"'\\{escape}' is a word boundary in the CEL library but a literal "
                    f"'{escape}' in RE2; write '{escape}' unescaped"
                )
            if escape in ("p", "P"):
                name, width = _class_name(source, index + 2)
                if name not in GENERAL_CATEGORIES:
                    return (
                        f"Unicode class '{source[index : index + 2 + width]}': only general "
                        "categories (L, Lu, N, Nd, P, S, Z...) mean the same in both engines"
                    )
                index += 2 + width
                continue
            index += 2
            continue
        if class_start >= 0:
            if char == "]" and index > class_start:
                class_start = -1
            elif char == "[" and not source.startswith("[:", index):
                return "a '[' inside a class nests a class in the CEL library; escape it: '\\['"
            elif char == "[":
                end = source.find(":]", index + 2)
                index = end + 2 if end >= 0 else index + 1
                continue
            elif source[index : index + 2] in ("&&", "--", "~~"):
                operator = source[index : index + 2]
                return (
                    f"'{operator}' inside a class is a set operation in the CEL library; "
                    f"escape the characters ('\\{operator[0]}\\{operator[1]}')"
                )
        elif char == "[":
            class_start = index + 1
            if source.startswith("^", class_start):
                class_start += 1
        index += 1
    return None


def _class_name(source: str, start: int) -> tuple[str, int]:
    """The name after `\\p` at `start` and how many characters it takes (`L` or `{Lu}`)."""
    if source.startswith("{", start):
        end = source.find("}", start)
        if end < 0:
            return source[start:], len(source) - start
        return source[start + 1 : end], end + 1 - start
    return source[start : start + 1], 1
