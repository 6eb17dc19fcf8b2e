"""OpenAI's rate-limit response headers, for the tightest limit of a request.

`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
`x-ratelimit-reset-requests` and the same three for `-tokens`, as OpenAI sends
them, so clients and SDKs that pace themselves by them work unchanged. Of several
levels with a requests (tokens) limit, the one with the least remaining speaks (on
a tie, the smaller limit). The reset is a duration in OpenAI's (Go's) format:
`250ms`, `1s`, `8.64s`, `6m0s`, `1h0m0s`: the time until the bucket next frees room
(its oldest admission ages out of the window), which for a bucket with nothing
remaining is when one more request fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from limits.claims import REQUESTS, TOKENS, BucketState, Plan

LIMIT_REQUESTS = "x-ratelimit-limit-requests"
REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
RESET_REQUESTS = "x-ratelimit-reset-requests"
LIMIT_TOKENS = "x-ratelimit-limit-tokens"
REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
RESET_TOKENS = "x-ratelimit-reset-tokens"

_NAMES = (
    (REQUESTS, LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS),
    (TOKENS, LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS),
)


#: Durations written out, by milliseconds, at most `_DURATIONS_KEPT` of them (emptied
#: when full): a window's reset under load is one of a few values near the window's
#: length, and writing one out costs more than the rest of the headers.
_DURATIONS: dict[int, str] = {}
_DURATIONS_KEPT = 4096


def duration(ms: int) -> str:
    """A duration as OpenAI writes it (Go's `time.Duration`, to the millisecond):
    integer arithmetic, no float formatting (every limited response writes two)."""
    written = _DURATIONS.get(ms)
    if written is None:
        if len(_DURATIONS) >= _DURATIONS_KEPT:
            _DURATIONS.clear()
        written = _DURATIONS[ms] = _duration(ms)
    return written


def _duration(ms: int) -> str:
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    whole, fraction = divmod(rest, 1000)
    seconds = f"{whole}.{fraction:03d}".rstrip("0") + "s" if fraction else f"{whole}s"
    if not minutes:
        return seconds
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{seconds}" if hours else f"{minutes}m{seconds}"


def rate_headers(states: Iterable[BucketState]) -> dict[str, str]:
    """The headers for the tightest requests limit and the tightest tokens limit
    among `states` (none for a kind of limit no level sets)."""
    states = list(states)
    headers = {}
    for name, limit, remaining, reset in _NAMES:
        candidates = [s for s in states if s.claim.name == name]
        if candidates:
            tightest = min(candidates, key=lambda s: (s.remaining, s.claim.limit))
            headers[limit] = str(tightest.claim.limit)
            headers[remaining] = str(tightest.remaining)
            headers[reset] = duration(tightest.reset_ms)
    return headers


def plan_headers(plan: Plan, used: Sequence[int], resets: Sequence[int]) -> dict[str, str]:
    """`rate_headers` for an admission of `plan`, read off the store's answer (each
    claim's `used` and `resets`): only the requests and tokens claims are looked at,
    and only the tightest of each is written out (its reset the only one read).

    The tightest: the least remaining, and of those the smallest limit, then the
    first. `plan.ranked` orders each kind's claims by limit, so it is the first
    with the least remaining; remaining is never below 0, so when any claim is
    over its limit (settlement debt), the first of those. One pass, no list, no
    keyword arguments: every limited response writes these (a list, `min` and
    `index` cost a third more)."""
    headers: dict[str, str] = {}
    limits = plan.limits
    for kind, ranked in enumerate(plan.ranked):
        if ranked:
            best = ranked[0]
            least = limits[best] - used[best]
            if least > 0:
                for index in ranked:
                    left = limits[index] - used[index]
                    if left < least:
                        best, least = index, left
                        if left <= 0:
                            break
            _, limit, remaining, reset = _NAMES[kind]
            headers[limit] = plan.limit_texts[best]
            headers[remaining] = str(least) if least > 0 else "0"
            headers[reset] = duration(resets[best])
    return headers
