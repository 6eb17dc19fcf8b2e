"""`pattern` and `patternProperties` with a time limit.

jsonschema evaluates these with `re.search`, synchronously, on the event loop. A
schema offered in a request is the client's to write, and a backtracking pattern
such as `^(a+)+$` takes exponential time on a near-miss string (26 `a`s and a `!`
take seconds): one request would freeze the gateway. The `regex` package has the
same syntax and semantics as `re` (its default V0 mode) and can give up after a
timeout, so these keywords use it instead:

- each match may take `MATCH_TIMEOUT` seconds;
- all matches while one value is validated may take `VALUE_BUDGET` seconds between
  them (set by `budget()`), so many strings cannot add up to a long freeze either.

A match that runs out of time is a violation of the schema ("pattern ... took
longer than 50 ms to match"), never a pass. `additionalProperties` is replaced too:
it decides which properties the patterns cover with the same searches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import regex
from jsonschema import ValidationError

#: Seconds one pattern may spend on one string.
MATCH_TIMEOUT = 0.05
#: Seconds all pattern matches may spend on one validated value together.
VALUE_BUDGET = 0.25

_deadline: ContextVar[float | None] = ContextVar("seawall_pattern_deadline", default=None)


class PatternTimeout(Exception):
    """A pattern did not finish matching within its time limit."""


@contextmanager
def budget(seconds: float = VALUE_BUDGET) -> Iterator[None]:
    """Caps the pattern time of everything validated inside the block."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def search(pattern: str, text: str) -> bool:
    """`re.search(pattern, text) is not None`, or `PatternTimeout`.

    A pattern `regex` cannot compile (the metaschema already checked it with `re`,
    so this is rare) never matches: the value is then reported as not matching.
    """
    limit, by_budget = MATCH_TIMEOUT, False
    deadline = _deadline.get()
    if deadline is not None and deadline - time.monotonic() < limit:
        limit, by_budget = deadline - time.monotonic(), True
    try:
        compiled = _compiled(pattern)
    except regex.error:
        return False
    try:
        if limit <= 0:
            raise TimeoutError
        return compiled.search(text, timeout=limit) is not None
    except TimeoutError:
        if by_budget:
            raise PatternTimeout(
                f"pattern {pattern!r} ran out of time: the patterns of this value may "
                f"take {round(VALUE_BUDGET * 1000)} ms to match in total"
            ) from None
        raise PatternTimeout(
            f"pattern {pattern!r} took longer than {round(MATCH_TIMEOUT * 1000)} ms to match"
        ) from None


def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = search(patrn, instance)
    except PatternTimeout as exc:
        yield ValidationError(str(exc))
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def patternProperties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            try:
                matched = search(patrn, key)
            except PatternTimeout as exc:
                yield ValidationError(f"property name {key!r}: {exc}", path=[key])
                continue
            if matched:
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    """The properties neither `properties` nor any `patternProperties` cover.

    Each pattern is searched on its own (jsonschema joins them with `|`, which is the
    same match and one more pattern to time).
    """
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for key in instance:
        if key in properties:
            continue
        try:
            if any(search(p, key) for p in patterns):
                continue
        except PatternTimeout:
            pass  # uncovered; the patternProperties keyword reports the timeout
        yield key


def additionalProperties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """jsonschema's own keyword (4.x), with `_additional` deciding the extras."""
    if not validator.is_type(instance, "object"):
        return
    extras = set(_additional(instance, schema))
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            names = sorted(extras, key=str)
            verb = "was" if len(names) == 1 else "were"
            listed = ", ".join(repr(name) for name in names)
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {verb} unexpected)"
            )


KEYWORDS = {
    "pattern": pattern,
    "patternProperties": patternProperties,
    "additionalProperties": additionalProperties,
}
