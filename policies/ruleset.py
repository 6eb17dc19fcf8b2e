"""One compiled rule set (the active one, or a candidate): its rules flattened per
tenant, evaluated per request under a time budget, with its decision cache.

Deciding for one request:

- the tenant's plan (built at compile time): the rules of every tenant in its
  chain, root first, each tenant's in config order, what they read, and how they
  are evaluated (below);
- the cache: a rule's outcome depends only on the attributes it reads. The key is
  the tenant and the values of every attribute the tenant's rules read, apart
  from per-request ones (`prompt_tokens`: a key holding the prompt size would
  almost never repeat). Rules that read a per-request attribute are evaluated on
  every request; the outcomes of the others come from the cache. When no rule
  reads one, the cache holds the finished `Decision`; else a `Partial`, which also
  keeps the decisions it has assembled, by the per-request rules' outcomes, so a
  hit that meets the same outcomes again assembles nothing;
- on a miss, one CEL context holding only the attributes the rules read (the
  library converts each value once per context, ~3 µs a string, which is most of
  the cost), then the rules. Every rule runs even after a deny, so `matched` and
  `flags` are complete for audit; the cost is bounded at compile time.

Few library calls: a call of a simple condition costs ~0.3 µs in the library,
and seawall's own work around each (two clock readings, counters, the outcome)
~0.7 µs more: 20 rules, ~20 µs of a ~60 µs miss (bench/cel_libraries.py's). So
each plan's rules (all of them for a miss, the per-request ones for a hit) are
split into batches (`_Combiner`): rules whose cost bounds (`policies.cost`) are at
most `cheap_steps` together, in order, share one program, the list of their
conditions `[(c1), (c2), ...]`, run by one call; a rule over it runs alone, as
before. An element of the list is evaluated exactly as the condition alone (the
same interpreter on the same subtree: `||`, `&&` and `?:` absorb or raise the same
errors), and an error in any element makes the whole call raise. So when the call
raises, or an element is not a bool, the batch's rules are evaluated one by one
instead, each with its own outcome, error detail and `on_error`, exactly as
without batching; so are a batch with a rule cut off for the caller's tenant or
reading an attribute over its limit. Counters stay per rule: a combined call adds
one evaluation to each of its rules and a match to each that held. Time samples
(`RuleTimes`) stay each rule's own: one run in `TIMING_SAMPLE_EVERY` of every
batch runs its rules one by one, timed alone. `combined_calls` and
`combined_fallbacks` count the combined calls and those evaluated one by one after.

The time budget (per rule): a library call cannot be interrupted, so the cost
bound refuses at load what could run long (`policies.cost`), and each call is
timed by the wall clock as a backstop. One over `budget` is checked against the
thread's CPU clock, read once per decision before its rules run, never by running
the rule again: the CPU the rule used is at least the CPU used since that reading
less the wall time before the rule started. Over the budget on both, it is an
overrun (an error, handled per `on_error`); over only by the wall clock, the
thread was preempted and the result stands (counted as a recheck). Rules whose
cost bound is at most `cheap_steps` (budget / (`STEP_NS` x `CPU_CHECK_MARGIN`))
could only use the budget on a machine that much slower than the cost model; a
decision of only such rules never reads the CPU clock. A batch's bound is the sum
of its rules', at most `cheap_steps` too, so a combined call is timed as one such
rule: a call over the budget by the wall clock only stands (one recheck); over it
on the CPU clock too (only when the decision read it) its rules are evaluated again
one by one, each timed against the budget on its own, so an overrun is attributed
to the rule that ran over (if any did) and handled as before. A rule costlier than
`cheap_steps` (one near the budget: a comprehension over `tools`, most `matches`)
is always evaluated and timed alone.

After an overrun the rule is cut off for the caller's tenant for `cool_down`: its
outcome is an error of kind `cutoff`, decided by its `on_error`, without running,
so a caller who found an input that runs long cannot hold the event loop again and
again. Only the tenant whose request overran is cut off (a rule of the root applies
to every tenant; one tenant's inputs must not switch it off for the others).
Outcomes with an overrun or a cut-off are not cached: they depend on time, not on
attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policies.assemble import assemble
from policies.attributes import (
    ATTRIBUTE_NAMES,
    PER_REQUEST,
    Attributes,
    cel_value,
    key_function,
    key_value,
    over_limit,
)
from policies.cache import DecisionCache
from policies.cost import STEP_NS
from policies.decision import Decision
from policies.native import Condition, native
from policies.rule import CompiledRule, Outcome
from policies.stats import RuleStats, RuleTimes, SetStats

if TYPE_CHECKING:
    import cel

    from policies.patterns import Pattern

#: Characters of an evaluation error kept in `RuleError.detail`.
MAX_DETAIL = 200
#: How long a rule is cut off for a tenant after one of its requests ran over the
#: budget with it.
COOL_DOWN_SECONDS = 30.0
#: How much slower than the cost model's rate (`cost.STEP_NS`) a machine must run
#: before a rule the model calls cheap could use its whole budget of CPU: rules that
#: cheap are not timed on the CPU clock (docs/tenants-and-policies.md, "The time budget").
CPU_CHECK_MARGIN = 20
#: One run in this many of each combined program evaluates its rules one by one
#: instead (the first run included), so each rule's time samples stay its own.
TIMING_SAMPLE_EVERY = 64
#: Decisions a `Partial` keeps, by the outcomes of the per-request rules.
MAX_LIVE_DECISIONS = 16
#: Is a value a bool (`isinstance` as a C function, mapped over a combined result).
_IS_BOOL = bool.__instancecheck__


class UnknownTenant(LookupError):
    """A tenant the policies were not compiled for (a request and its policies must
    come from the same config version)."""


#: The wall clock evaluations are timed with, in nanoseconds.
Timer = Callable[[], int]


@dataclass(frozen=True, slots=True, eq=False)
class Partial:
    """A cache entry for a tenant with per-request rules: the other rules' outcomes
    (`None` at the per-request rules' places), and a CEL context already holding
    the other attributes those rules read, so a hit binds only the per-request ones
    (the library converts each string for ~3 µs; `tools` at its limit takes 0.4 ms)."""

    outcomes: tuple[Outcome | None, ...]
    context: cel.Context
    #: Attributes the key holds that are over their limits (left out of `context`).
    too_large: Mapping[str, str]
    #: The decisions met so far, by the per-request rules' outcomes (in `Plan.live`
    #: order; only when each is a bool, at most `MAX_LIVE_DECISIONS`), the one when
    #: every per-request rule is false among them: a hit meeting one assembles
    #: nothing (assembling 20 rules' outcomes is ~4 µs, about half of a hit).
    decisions: dict[tuple[Outcome | None, ...], Decision]


#: What the cache holds: the finished decision when the tenant has no per-request
#: rules, else a `Partial`.
Cached = Decision | Partial


@dataclass(slots=True, eq=False)
class Batch:
    """Rules of a plan evaluated by one library call (`program`, the list of their
    conditions), or one rule evaluated alone (`program` is `None`)."""

    #: Indices into the plan's rules, in order.
    indices: tuple[int, ...]
    program: cel.Program | None
    #: Their `RuleTimes`, in `indices` order.
    times: tuple[RuleTimes, ...]
    #: Their indices in the rule set (the cut-off key).
    set_indices: tuple[int, ...]
    #: Every attribute they read.
    reads: frozenset[str]
    #: Calls of `program` so far (one in `TIMING_SAMPLE_EVERY` runs rule by rule).
    runs: int = 0


@dataclass(frozen=True, slots=True)
class Schedule:
    """How the rules of a plan at `indices` are evaluated: batch by batch."""

    indices: tuple[int, ...]
    batches: tuple[Batch, ...]
    #: Some rule's cost bound is over `RuleSet.cheap_steps`: the decision reads the
    #: thread's CPU clock before its rules run.
    cpu_clock: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """What deciding for one tenant involves."""

    rules: tuple[CompiledRule, ...]
    #: Indices into `rules` of those evaluated on every request (they read a
    #: per-request attribute); the others' outcomes are cached.
    live: tuple[int, ...]
    #: What every rule reads apart from per-request attributes, in `ATTRIBUTES`
    #: order: with the tenant, the cache key.
    key_reads: tuple[str, ...]
    #: The per-request attributes the live rules read.
    per_request_reads: tuple[str, ...]
    #: The other attributes the live rules read (held in a `Partial`'s context).
    live_key_reads: tuple[str, ...]
    #: The tenant and the values of `key_reads`, hashable.
    key_of: Callable[[Attributes], Hashable]
    #: The `matches` functions of every rule (`Expression.functions`), for its contexts.
    functions: Mapping[str, Pattern]
    #: How every rule is evaluated (a cache miss), and the `live` ones (a hit).
    everything: Schedule
    live_schedule: Schedule
    #: The `live` rules as Python conditions (index, condition, its `RuleTimes`),
    #: when every one of them is in the subset that cannot fail (`policies.native`):
    #: a hit then makes no library call. None otherwise.
    native_live: tuple[tuple[int, Condition, RuleTimes], ...] | None = None


class RuleSet:
    def __init__(
        self,
        version: str,
        rules: tuple[CompiledRule, ...],
        chains: Mapping[str, tuple[str, ...]],
        budget_seconds: float,
        cache: DecisionCache[Cached],
        timer: Timer = time.perf_counter_ns,
        cool_down_seconds: float = COOL_DOWN_SECONDS,
    ) -> None:
        self.version = version
        self._timer = timer
        self.cool_down_ns = int(cool_down_seconds * 1e9)
        #: (rule index, tenant) -> when, by `timer`, its cut-off ends.
        self._cut_off: dict[tuple[int, str], int] = {}
        self._index = {id(rule): index for index, rule in enumerate(rules)}
        self.rules = rules
        self.budget_ns = int(budget_seconds * 1e9)
        #: Rules whose cost bound is at most this many steps cannot use the budget's
        #: CPU unless the machine ran `CPU_CHECK_MARGIN` times slower than the cost
        #: model's rate: a decision of only such rules never reads the CPU clock.
        #: The same bound limits the rules combined into one program together, so a
        #: combined call cannot use the budget's CPU either.
        self.cheap_steps = self.budget_ns // (STEP_NS * CPU_CHECK_MARGIN)
        self.cache = cache
        self.times = {rule.id: RuleTimes() for rule in rules}
        #: Evaluate batches of rules with one library call (`False`: every rule alone,
        #: the reference the tests compare with).
        self.combine = True
        #: One run in this many of a combined program runs its rules one by one
        #: (`TIMING_SAMPLE_EVERY`); 0: never.
        self.sample_every = TIMING_SAMPLE_EVERY
        combiner = _Combiner(self._index, self.times, self.cheap_steps)
        self.plans = {tenant: _plan(rules, chain, combiner) for tenant, chain in chains.items()}
        #: The library's context type, and a program evaluated once on each new
        #: context (so converting the attributes is not charged to whichever rule
        #: runs first): only a set with rules loads the library (policies/library.py).
        self._new_context: Any = None
        self._warm_up: Any = None
        if rules:
            from policies.library import cel

            self._new_context = cel.Context
            self._warm_up = cel.compile("true")
        self._empty = Decision(version)
        self.decisions = 0
        self.evaluations = 0
        self.errors = 0
        self.budget_overruns = 0
        self.budget_rechecks = 0
        self.budget_cutoffs = 0
        self.combined_calls = 0
        self.combined_fallbacks = 0

    def rules_for(self, tenant: str) -> tuple[CompiledRule, ...]:
        """The rules that apply to `tenant`: its chain's, root first."""
        return self._plan(tenant).rules

    def _plan(self, tenant: str) -> Plan:
        plan = self.plans.get(tenant)
        if plan is None:
            raise UnknownTenant(f"policies were not compiled for tenant {tenant!r}")
        return plan

    def decide(self, attrs: Attributes) -> Decision:
        plan = self._plan(attrs.tenant)
        self.decisions += 1
        if not plan.rules:
            return self._empty
        key = plan.key_of(attrs)
        try:
            cached = self.cache.get(key)
        except TypeError:  # a list where a tuple belongs: the converting key
            key = (attrs.tenant, *[key_value(attrs, name) for name in plan.key_reads])
            cached = self.cache.get(key)
        if isinstance(cached, Decision):
            return cached
        if cached is not None:
            return self._decide_live(plan, cached, attrs)
        return self._decide_all(plan, attrs, key)

    def _decide_all(self, plan: Plan, attrs: Attributes, key: Hashable) -> Decision:
        """A cache miss: every rule evaluated, and what can be cached, cached."""
        too_large = {name: why for name in plan.key_reads if (why := over_limit(attrs, name))}
        context = _context(self._new_context, attrs, plan.key_reads, too_large, plan.functions)
        per_request = self._bind_per_request(plan, context, dict(too_large), attrs)
        outcomes, overran = self._run_all(
            plan.rules, plan.everything, context, per_request, attrs.tenant
        )
        decision = assemble(self.version, plan.rules, outcomes)
        if not overran and self.cache.max_entries > 0:
            if plan.live:
                kept = tuple(None if i in plan.live else o for i, o in enumerate(outcomes))
                quiet = [False if i in plan.live else o for i, o in enumerate(outcomes)]
                decisions: dict[tuple[Outcome | None, ...], Decision] = {
                    (False,) * len(plan.live): assemble(self.version, plan.rules, quiet)
                }
                live = tuple(outcomes[index] for index in plan.live)
                if all(map(_IS_BOOL, live)):
                    decisions[live] = decision
                live_context = _context(
                    self._new_context, attrs, plan.live_key_reads, too_large, plan.functions
                )
                self.cache.put(key, Partial(kept, live_context, too_large, decisions))
            else:
                self.cache.put(key, decision)
        return decision

    def _decide_live(self, plan: Plan, partial: Partial, attrs: Attributes) -> Decision:
        """A cache hit for a tenant with per-request rules: only those are evaluated,
        in Python when they all can be (`Plan.native_live`), else by the library."""
        live = self._run_native(plan, partial, attrs)
        if live is None:
            too_large = self._bind_per_request(
                plan, partial.context, dict(partial.too_large), attrs
            )
            live, _ = self._run_all(
                plan.rules, plan.live_schedule, partial.context, too_large, attrs.tenant
            )
        pattern = tuple(live[index] for index in plan.live)
        decision = partial.decisions.get(pattern)
        if decision is not None:
            return decision
        outcomes = list(partial.outcomes)
        for index in plan.live:
            outcomes[index] = live[index]
        decision = assemble(self.version, plan.rules, outcomes)
        if len(partial.decisions) < MAX_LIVE_DECISIONS and all(map(_IS_BOOL, pattern)):
            partial.decisions[pattern] = decision
        return decision

    def _run_native(
        self, plan: Plan, partial: Partial, attrs: Attributes
    ) -> list[Outcome | None] | None:
        """The live rules' outcomes computed in Python (counted as evaluations, as the
        library's are; not timed: they cannot approach the budget), or None when the
        library must evaluate them: some rule is not in the subset, batching is off
        (the reference the tests compare with), a rule is cut off for some tenant, or
        an attribute they read is over its limit (each such rule then fails by its
        `on_error`, which only the library path decides)."""
        conditions = plan.native_live
        if conditions is None or not self.combine or self._cut_off or partial.too_large:
            return None
        for name in plan.per_request_reads:
            if over_limit(attrs, name):
                return None
        outcomes: list[Outcome | None] = [None] * len(plan.rules)
        for index, condition, times in conditions:
            result = condition(attrs)
            times.evaluations += 1
            if result:
                times.matches += 1
            outcomes[index] = result
        self.evaluations += len(conditions)
        return outcomes

    def _bind_per_request(
        self, plan: Plan, context: cel.Context, too_large: dict[str, str], attrs: Attributes
    ) -> dict[str, str]:
        """Sets the per-request attributes in `context` (those over their limits go
        into `too_large` instead), converts the context once, and returns `too_large`."""
        for name in plan.per_request_reads:
            why = over_limit(attrs, name)
            if why:
                too_large[name] = why
            else:
                context.add_variable(name, cel_value(attrs, name))
        self._warm_up.execute(context)
        return too_large

    def _run_all(
        self,
        rules: tuple[CompiledRule, ...],
        schedule: Schedule,
        context: cel.Context,
        too_large: Mapping[str, str],
        tenant: str,
    ) -> tuple[list[Outcome | None], bool]:
        """The outcomes of `rules[i]` for each of `schedule.indices` (`None`
        elsewhere), and whether any ran over the budget or was cut off (so the
        result must not be cached)."""
        outcomes: list[Outcome | None] = [None] * len(rules)
        overran = False
        # The thread's CPU clock is a system call (~1-10 µs on a busy VM): read only
        # for a decision that has a rule it could matter for.
        clocks = _Clocks(time.thread_time_ns(), self._timer()) if schedule.cpu_clock else None
        for batch in schedule.batches:
            program = batch.program
            if (
                program is not None
                and self.combine
                and (not too_large or batch.reads.isdisjoint(too_large))
                and not (self._cut_off and self._any_cut_off(batch, tenant))
            ):
                runs = batch.runs
                batch.runs = runs + 1
                every = self.sample_every
                if not (every and runs % every == 0) and self._run_batch(
                    batch, program, context, clocks, outcomes
                ):
                    continue
            if self._run_each(rules, batch.indices, context, too_large, tenant, clocks, outcomes):
                overran = True
        return outcomes, overran

    def _run_batch(
        self,
        batch: Batch,
        program: cel.Program,
        context: cel.Context,
        clocks: _Clocks | None,
        outcomes: list[Outcome | None],
    ) -> bool:
        """Evaluates `batch`'s rules with one call of its combined program, into
        `outcomes`. `False`, with nothing recorded, when they must be evaluated one
        by one instead: the call raised (a rule failed; which, and how, only the
        rules' own evaluations tell), a condition was not a bool, or the call ran
        over the budget on the CPU clock too (which rule did, if any, only their own
        evaluations tell)."""
        self.combined_calls += 1
        start = self._timer()
        try:
            results = program.execute(context)
        except BaseException as exc:
            if not _library_failure(exc):
                raise
            self.combined_fallbacks += 1
            return False
        if self._timer() - start > self.budget_ns:
            if clocks is not None and self._over_budget_on_cpu(clocks, start):
                self.combined_fallbacks += 1
                return False
            self.budget_rechecks += 1
        if not all(map(_IS_BOOL, results)):
            self.combined_fallbacks += 1
            return False
        self.evaluations += len(results)
        for index, times, result in zip(batch.indices, batch.times, results, strict=True):
            times.evaluations += 1
            if result:
                times.matches += 1
            outcomes[index] = result
        return True

    def _run_each(
        self,
        rules: tuple[CompiledRule, ...],
        indices: tuple[int, ...],
        context: cel.Context,
        too_large: Mapping[str, str],
        tenant: str,
        clocks: _Clocks | None,
        outcomes: list[Outcome | None],
    ) -> bool:
        """Evaluates `rules[i]` for each of `indices`, one library call each, into
        `outcomes`; whether any ran over the budget or was cut off."""
        overran = False
        for index in indices:
            rule = rules[index]
            blocked = [too_large[name] for name in rule.reads if name in too_large]
            outcome: Outcome
            if blocked:
                outcome = ("attribute", "; ".join(blocked))
            else:
                outcome = self._cut_off_outcome(rule, tenant) or self._run(
                    rule, context, clocks, tenant
                )
            if isinstance(outcome, tuple):
                self.errors += 1
                overran = overran or outcome[0] in ("budget", "cutoff")
            outcomes[index] = outcome
        return overran

    def _any_cut_off(self, batch: Batch, tenant: str) -> bool:
        cut_off = self._cut_off
        return any((index, tenant) in cut_off for index in batch.set_indices)

    def _cut_off_outcome(self, rule: CompiledRule, tenant: str) -> Outcome | None:
        """`(cutoff, detail)` while the rule is cut off for `tenant`, else `None`."""
        if not self._cut_off:
            return None
        key = (self._index[id(rule)], tenant)
        until = self._cut_off.get(key)
        if until is None:
            return None
        left = until - self._timer()
        if left <= 0:
            del self._cut_off[key]
            return None
        self.budget_cutoffs += 1
        self.times[rule.id].cutoffs += 1
        return "cutoff", (
            f"cut off for tenant {tenant!r} for {left / 1e9:.1f} s more after running over "
            f"the budget of {self.budget_ns / 1e6:g} ms"
        )

    def _run(
        self, rule: CompiledRule, context: cel.Context, clocks: _Clocks | None, tenant: str
    ) -> Outcome:
        """The rule's condition, or `(kind, detail)` when it failed."""
        times = self.times[rule.id]
        program = rule.expression.program
        self.evaluations += 1
        start = self._timer()
        try:
            result = program.execute(context)
        except Exception as exc:
            times.record(self._timer() - start)
            times.errors += 1
            return "error", _detail(exc)
        end = self._timer()
        elapsed = end - start
        times.record(elapsed)
        if elapsed > self.budget_ns:
            if clocks is not None and self._over_budget_on_cpu(clocks, start):
                times.overruns += 1
                self.budget_overruns += 1
                self._cut_off[(self._index[id(rule)], tenant)] = end + self.cool_down_ns
                budget_ms = self.budget_ns / 1e6
                return "budget", (
                    f"took {elapsed / 1e6:.3f} ms, over the budget of {budget_ms:g} ms; "
                    f"cut off for tenant {tenant!r} for {self.cool_down_ns / 1e9:g} s"
                )
            self.budget_rechecks += 1
        if not isinstance(result, bool):
            times.errors += 1
            return "error", f"evaluated to {type(result).__name__}, not bool"
        if result:
            times.matches += 1
        return result

    def _over_budget_on_cpu(self, clocks: _Clocks, start: int) -> bool:
        """Did the rule that started at `start` (wall) and just ended use more CPU
        than the budget? The CPU it used is at least the CPU used since `clocks`
        were read, less the wall time from then to `start`. (Asked only when the
        decision read the CPU clock: a cheap rule over the budget by the wall clock
        was preempted, and counts as a recheck.) Moves `clocks` to now: the CPU clock
        first, then the wall clock, since a thread is often switched out on the way
        back from the CPU clock's system call, and that pause must not count as time
        before the next rule."""
        cpu_now = time.thread_time_ns()
        cpu_at_least = (cpu_now - clocks.cpu) - max(0, start - clocks.wall)
        clocks.cpu, clocks.wall = cpu_now, self._timer()
        return cpu_at_least > self.budget_ns

    def stats(self) -> SetStats:
        return SetStats(
            version=self.version,
            decisions=self.decisions,
            cache_hits=self.cache.hits,
            cache_misses=self.cache.misses,
            cache_entries=len(self.cache),
            evaluations=self.evaluations,
            errors=self.errors,
            budget_overruns=self.budget_overruns,
            budget_rechecks=self.budget_rechecks,
            budget_cutoffs=self.budget_cutoffs,
            combined_calls=self.combined_calls,
            combined_fallbacks=self.combined_fallbacks,
            rules=tuple(
                RuleStats(
                    rule=rule.id,
                    evaluations=times.evaluations,
                    matches=times.matches,
                    errors=times.errors,
                    overruns=times.overruns,
                    cutoffs=times.cutoffs,
                    median_us=times.percentile_us(0.5),
                    p99_us=times.percentile_us(0.99),
                )
                for rule in self.rules
                for times in (self.times[rule.id],)
            ),
        )


@dataclass(slots=True)
class _Clocks:
    """The thread's CPU clock and the wall clock, read together (nanoseconds)."""

    cpu: int
    wall: int


def _context(
    new_context: type[cel.Context],
    attrs: Attributes,
    names: tuple[str, ...],
    leave_out: Mapping[str, str],
    functions: Mapping[str, Pattern],
) -> cel.Context:
    variables = {name: cel_value(attrs, name) for name in names if name not in leave_out}
    if not functions:
        return new_context(variables)
    return new_context(variables, functions=dict(functions))


def _plan(rules: tuple[CompiledRule, ...], chain: tuple[str, ...], combiner: _Combiner) -> Plan:
    applying = tuple(rule for tenant in chain for rule in rules if rule.tenant == tenant)
    live = tuple(i for i, rule in enumerate(applying) if PER_REQUEST.intersection(rule.reads))
    read = {name for rule in applying for name in rule.reads}
    live_read = {name for i in live for name in applying[i].reads}

    def ordered(names: set[str], per_request: bool) -> tuple[str, ...]:
        return tuple(n for n in ATTRIBUTE_NAMES if n in names and (n in PER_REQUEST) == per_request)

    key_reads = ordered(read, per_request=False)
    functions = {
        name: pattern for rule in applying for name, pattern in rule.expression.functions.items()
    }
    return Plan(
        applying,
        live,
        key_reads=key_reads,
        per_request_reads=ordered(live_read, per_request=True),
        live_key_reads=ordered(live_read, per_request=False),
        key_of=key_function(key_reads),
        functions=functions,
        everything=combiner.schedule(applying, tuple(range(len(applying)))),
        live_schedule=combiner.schedule(applying, live),
        native_live=combiner.native(applying, live),
    )


class _Combiner:
    """Splits the rules a plan evaluates into batches: rules whose cost bounds are
    at most `cheap_steps` together, taken in order, share one program, the list of
    their conditions; a rule over it is evaluated alone. (The order batches run in
    does not matter: each outcome has its place, and every rule runs.) Each
    combined text is compiled once per rule set, however many plans have it."""

    def __init__(
        self, index: Mapping[int, int], times: Mapping[str, RuleTimes], cheap_steps: int
    ) -> None:
        self.index = index
        self.times = times
        self.cheap_steps = cheap_steps
        self.programs: dict[str, cel.Program | None] = {}
        self.conditions: dict[str, Condition | None] = {}

    def schedule(self, rules: tuple[CompiledRule, ...], indices: tuple[int, ...]) -> Schedule:
        groups: list[list[int]] = []
        current: list[int] | None = None
        steps = 0
        for index in indices:
            expression = rules[index].expression
            if expression.steps > self.cheap_steps or not expression.text:
                groups.append([index])
                continue
            if current is None or steps + expression.steps > self.cheap_steps:
                current = []
                groups.append(current)
                steps = 0
            current.append(index)
            steps += expression.steps
        return Schedule(
            indices,
            tuple(self.batch(rules, tuple(group)) for group in groups),
            any(rules[index].expression.steps > self.cheap_steps for index in indices),
        )

    def native(
        self, rules: tuple[CompiledRule, ...], indices: tuple[int, ...]
    ) -> tuple[tuple[int, Condition, RuleTimes], ...] | None:
        """`rules[i]` for each of `indices` as Python conditions, or None unless every
        one is in `policies.native`'s subset (each source is compiled once)."""
        if not indices:
            return None
        found = []
        for index in indices:
            rule = rules[index]
            source = rule.expression.source
            if source not in self.conditions:
                self.conditions[source] = native(source)
            condition = self.conditions[source]
            if condition is None:
                return None
            found.append((index, condition, self.times[rule.id]))
        return tuple(found)

    def batch(self, rules: tuple[CompiledRule, ...], indices: tuple[int, ...]) -> Batch:
        chosen = [rules[index] for index in indices]
        texts = [rule.expression.text for rule in chosen]
        return Batch(
            indices,
            self.program(texts) if len(texts) > 1 else None,
            tuple(self.times[rule.id] for rule in chosen),
            tuple(self.index[id(rule)] for rule in chosen),
            frozenset(name for rule in chosen for name in rule.reads),
        )

    def program(self, texts: list[str]) -> cel.Program | None:
        """The list of `texts`' values as one program, or `None` when the library
        will not compile it (nested deeper than it parses, say). Each condition is
        parenthesised on lines of its own, so a trailing `//` comment ends where it
        did."""
        from policies.library import cel

        combined = "[" + ",".join(f"(\n{text}\n)" for text in texts) + "]"
        if combined not in self.programs:
            try:
                self.programs[combined] = cel.compile(combined)
            except BaseException as exc:
                if not _library_failure(exc):
                    raise
                self.programs[combined] = None
        return self.programs[combined]


def _library_failure(exc: BaseException) -> bool:
    """An error from the CEL library (a `PanicException` from its Rust core is a
    `BaseException`), as opposed to an interrupt or exit."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _detail(exc: Exception) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
