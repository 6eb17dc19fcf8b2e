"""What `matches` costs: the table behind `policies.cost`'s charge for a regex.

    .venv/bin/python bench/regex_cost.py            # ~1 minute
    .venv/bin/python bench/regex_cost.py --quick    # fewer subjects

Prints Markdown:

1. one `matches` call through the CEL library: its own `matches` (the pattern
   compiled on every call) against seawall's (compiled once, `policies.patterns`);
2. pattern kind x subject length -> µs per match with the engine as seawall
   configures it (RE2, `policies.patterns`): for each, many different subjects built
   to be the worst for that pattern (long near-misses, inputs that make the DFA build
   a new state for every byte), each timed once, so a DFA cache warmed by the same
   subject does not hide the cost; the median and the worst of them;
3. the same patterns with the DFA out of the way (a memory budget too small for
   it): RE2's NFA, the fallback it takes when its DFA runs out of memory, and the
   O(subject x program) worst case the cost model charges;
4. the charge `policies.cost.matches_steps` makes beside the worst measured time:
   the model must never be under it.

Match times are the thread's CPU time (what the budget is checked on), on a shared
2-core machine; the call-overhead table is wall-clock medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cel  # noqa: E402
import re2  # noqa: E402

from policies.cost import (  # noqa: E402
    MATCH_CALL_STEPS,
    MATCH_CHAR_NS,
    MATCH_INSTRUCTION_NS,
    STEP_NS,
    matches_steps,
)
from policies.patterns import MAX_MEMORY, compile_pattern  # noqa: E402

LENGTHS = (64, 256, 1024, 4096)
RNG = random.Random(20261206)
LETTERS = (
    [chr(c) for c in range(0x61, 0x7B)]
    + [chr(c) for c in range(0xE0, 0xFF)]
    + [chr(c) for c in range(0x3B1, 0x3C9)]
    + [chr(c) for c in range(0x4E00, 0x4E20)]
    + [chr(c) for c in range(0x10400, 0x10420)]
)


def _periodic(alphabet: str, period: int, breaker: str) -> Callable[[int], str]:
    """Random runs of `alphabet` one shorter than `period`, then `breaker`: the
    pattern almost matches everywhere and never does."""

    def make(length: int) -> str:
        out: list[str] = []
        while len(out) < length:
            out += [RNG.choice(alphabet) for _ in range(period - 1)] + [breaker]
        return "".join(out[:length])

    return make


def _repeat(text: str) -> Callable[[int], str]:
    return lambda length: (text * (length // len(text) + 1))[:length]


def _letters(length: int) -> str:
    return "".join(RNG.choice(LETTERS) for _ in range(length))


#: kind -> (pattern, subjects that are bad for it)
KINDS: dict[str, tuple[str, list[Callable[[int], str]]]] = {
    "literal": ("needle", [_repeat("needl"), _letters]),
    "anchored class": ("^[a-z0-9-]+$", [_repeat("a"), _periodic("ab-", 1000, "!")]),
    "alternation of names": (
        "^(gpt-4o|gpt-4o-mini|claude-3-5-sonnet|claude-3-opus)$",
        [_repeat("gpt-4o-mini"), _repeat("claude-3-5-sonne")],
    ),
    "case-insensitive phrase": (
        "(?i)ignore (all )?previous instructions",
        [_repeat("IGNORE ALL PREVIOUS INSTRUCTION "), _letters],
    ),
    "counted class (the issue's \\w{90})": (
        "[[:word:]]{90}",
        [_periodic("ab_9", 90, "!"), _repeat("a"), _letters],
    ),
    "DFA blow-up, 20": ("[ab]*a[ab]{20}", [_periodic("ab", 21, "c"), _repeat("a")]),
    "DFA blow-up, 200": ("[ab]*a[ab]{200}", [_periodic("ab", 201, "c")]),
    "stacked optionals, 50": ("(?:a?){50}a{50}", [_periodic("a", 50, "c"), _repeat("a")]),
    "dot, counted, Unicode": (".{50}x", [_letters, _repeat("é")]),
    "Unicode digits": ("\\p{Nd}{6}!", [_letters, _periodic("0\u0661\u0662\u0969", 6, "x")]),
    "stacked optionals, 330 (near the size limit)": (
        "(?:a?){330}a{330}",
        [_periodic("a", 330, "c"), _repeat("a")],
    ),
}


def _one(call: Callable[[], object]) -> float:
    """µs of this thread's CPU time: a turn another process takes on the core (4 ms
    on this shared machine) is not the pattern's cost, and the budget is checked on
    the CPU clock too."""
    start = time.thread_time_ns()
    call()
    return (time.thread_time_ns() - start) / 1000


def _timed(call: Callable[[], object], runs: int) -> float:
    return statistics.median(_one(call) for _ in range(runs))


def call_overhead(runs: int) -> list[tuple[str, float, float]]:
    """µs per evaluation of `s.matches(...)` in the library, its way and seawall's."""
    pattern = compile_pattern("^[a-z]+-[0-9]+$")
    native = cel.compile('s.matches("^[a-z]+-[0-9]+$")')
    ours = cel.compile(f"s.{pattern.function_name}()")
    rows = []
    for length in (8, 1024):
        subject = "a" * length
        plain = cel.Context({"s": subject})
        with_function = cel.Context({"s": subject}, functions={pattern.function_name: pattern})
        rows.append(
            (
                f"{length} chars",
                _timed(lambda c=plain: native.execute(c), runs),
                _timed(lambda c=with_function: ours.execute(c), runs),
            )
        )
    return rows


def _nfa_only(source: str) -> Any:
    """`source` compiled with a memory budget too small for RE2's DFA: every search
    runs the NFA (or the bit-state backtracker, also O(subject x program))."""
    options = re2.Options()
    options.never_capture = True
    options.log_errors = False
    for budget in (1 << 15, 1 << 16, 1 << 18):
        options.max_mem = budget
        regexp = re2._re2.RE2(source.encode(), options)
        if regexp.ok():
            return regexp
    raise RuntimeError(f"{source!r} does not compile with a small budget")


def measure(subjects: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    anchor = re2._re2.RE2.Anchor.UNANCHORED
    for kind, (source, makers) in KINDS.items():
        pattern = compile_pattern(source)
        nfa = _nfa_only(source)
        for length in LENGTHS:
            dfa_times, nfa_times = [], []
            for make in makers:
                for _ in range(subjects):
                    subject = make(length)
                    encoded = subject.encode()
                    dfa_times.append(_one(lambda s=subject, p=pattern: p(s)))
                    nfa_times.append(_one(lambda e=encoded, r=nfa: r.Match(anchor, e, 0, len(e))))
            worst = max(max(dfa_times), max(nfa_times))
            charged = (matches_steps(length, pattern.program_size) - MATCH_CALL_STEPS) * (
                STEP_NS / 1000
            )
            rows.append(
                {
                    "kind": kind,
                    "pattern": source,
                    "program": pattern.program_size,
                    "chars": length,
                    "median_us": statistics.median(dfa_times),
                    "worst_us": max(dfa_times),
                    "nfa_median_us": statistics.median(nfa_times),
                    "nfa_worst_us": max(nfa_times),
                    "charged_us": charged,
                    "ratio": worst / charged,
                }
            )
    return rows


def markdown(overhead: list[tuple[str, float, float]], rows: list[dict[str, object]]) -> str:
    out = [
        f"load average {', '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}",
        "",
        "| `s.matches(...)` in the CEL library | its own (compiled per call) µs | seawall's µs |",
        "|---|---|---|",
    ]
    out += [f"| {name} | {a:.2f} | {b:.2f} |" for name, a, b in overhead]
    out += [
        "",
        f"Charged per match: {MATCH_CALL_STEPS} steps, plus chars x ({MATCH_CHAR_NS:g} ns + "
        f"{MATCH_INSTRUCTION_NS:g} ns x program size); RE2 max_mem {MAX_MEMORY} bytes.",
        "",
        "| pattern kind | pattern | program | chars | median µs | worst µs "
        "| NFA median µs | NFA worst µs | charged µs | worst / charged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pattern = str(r["pattern"]).replace("|", "\\|")
        out.append(
            f"| {r['kind']} | `{pattern}` | {r['program']} | {r['chars']} "
            f"| {r['median_us']:.1f} | {r['worst_us']:.1f} | {r['nfa_median_us']:.1f} "
            f"| {r['nfa_worst_us']:.1f} | {r['charged_us']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    subjects = 5 if args.quick else 20
    overhead = call_overhead(200 if args.quick else 2000)
    print(markdown(overhead, measure(subjects)))


if __name__ == "__main__":
    main()
