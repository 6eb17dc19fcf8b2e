"""A phase's config rollout, driven over the admin API as an operator would.

At the phase's start the serving config (`GET /admin/config`) is patched with the
step's `candidate` (a JSON merge patch) and sent as a canary (`PUT /admin/config?
rollout=canary&share=...`); the gateway then judges it by itself. During the phase
`GET /admin/config/rollout` is polled; the phase's probes read the last answer
(`RolloutView`). At the run's end `undo` leaves the gateway as the run found it, as
far as it can: a rollout still running is aborted, and a version one of the run's
rollouts promoted is rolled back to the version that served when the run began.

`GET /admin/config` masks secrets (`**********`, `user:***@host`): such a config is
not one the gateway can serve again, so a candidate that still holds a masked value
is refused here, naming where, and the patch must restate it (`env:NAME`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from chaos.runner.gateway_api import GatewayAPI, GatewayProblem
from chaos.runner.merge_patch import apply_patch, string_paths
from chaos.runner.schema import RolloutStep
from common.secrets import MASK

#: How often the runner looks at the rollout during its phase (seconds).
POLL_S = 0.25
#: How `GET /admin/config` shows a `Secret` (pydantic's SecretStr in JSON).
MASKED_SECRET = "**********"
FINAL = frozenset({"promoted", "rolled_back", "aborted"})


def is_masked(text: str) -> bool:
    """A secret `GET /admin/config` does not show: a masked credential, or a URL with
    a masked password or credential parameter (common/secrets.py)."""
    return text == MASKED_SECRET or ("://" in text and (f"{MASK}@" in text or f"={MASK}" in text))


def candidate_document(serving: dict[str, Any], step: RolloutStep) -> str:
    """The candidate config: the step's patch over the serving config, as JSON."""
    candidate = apply_patch(serving, step.candidate)
    masked = string_paths(candidate, is_masked)
    if masked:
        raise GatewayProblem(
            "the candidate config still holds secrets GET /admin/config masks: "
            f"{', '.join(masked)}; restate them in the rollout's candidate patch "
            "(e.g. `env:NAME`)"
        )
    return json.dumps(candidate, sort_keys=True)


@dataclass(frozen=True)
class RolloutView:
    """`GET /admin/config/rollout` about one rollout, as last seen."""

    state: str
    baseline: str
    candidate: str
    #: Unix seconds, the gateway's clock (as every step's `at`).
    started_at: float
    steps: tuple[dict[str, Any], ...]
    #: The whole answer, for the report.
    answer: dict[str, Any]

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def decided_s(self) -> float | None:
        """Seconds from the start to the final step (both the gateway's clock, so a
        remote gateway's skew does not count); None while it runs."""
        if not self.final or not self.steps:
            return None
        return float(self.steps[-1]["at"]) - self.started_at

    @property
    def summary(self) -> str:
        """The state and why: the final step's reason, or the judge's last verdict."""
        if self.final and self.steps:
            return f"{self.state}: {self.steps[-1].get('reason') or ''}"
        verdict = self.answer.get("verdict")
        result = verdict.get("result") if isinstance(verdict, dict) else None
        return f"{self.state} (last verdict: {result or 'none yet'})"


def parse_view(answer: dict[str, Any]) -> RolloutView | None:
    """The view of an answer about a rollout (None: idle, or not a rollout's shape)."""
    try:
        candidate = answer["candidate"]
        if not isinstance(candidate, dict):
            return None
        steps = tuple(dict(step) for step in answer["steps"])
        return RolloutView(
            state=str(answer["state"]),
            baseline=str(answer["baseline"]["id"]),
            candidate=str(candidate["id"]),
            started_at=float(answer["started_at"]),
            steps=steps,
            answer=answer,
        )
    except (KeyError, TypeError, ValueError):
        return None


class PhaseRollout:
    """One phase's rollout: started, watched, and its last view."""

    def __init__(self, api: GatewayAPI, step: RolloutStep, clock: Callable[[], float]) -> None:
        self.api = api
        self.step = step
        self.clock = clock
        #: The version serving when it started, and the candidate (None until the
        #: gateway accepted it).
        self.baseline: str | None = None
        self.candidate: str | None = None
        self.view: RolloutView | None = None
        #: The run's clock when the PUT was sent.
        self.sent_at = 0.0
        #: Set when the rollout reached a final state, or watching stopped.
        self.over = asyncio.Event()

    @property
    def deadline(self) -> float:
        """The run's clock past which waiting for a decision is pointless: the bound,
        and one look more."""
        return self.sent_at + self.step.within_s + POLL_S

    async def start(self) -> None:
        current = parse_view(await self.api.rollout())
        if current is not None and current.state == "running":
            raise GatewayProblem(
                f"a rollout of config version {current.candidate} is already running: "
                "the experiment would supersede it"
            )
        self.baseline, serving = await self.api.serving_config()
        document = candidate_document(serving, self.step)
        self.sent_at = self.clock()
        answer = await self.api.start_canary(document, self.step.share, self.step.tenants)
        try:
            self.candidate = str(answer["version"]["id"])
        except (KeyError, TypeError):
            raise GatewayProblem("PUT /admin/config: no version in the answer") from None
        if self.candidate == self.baseline:
            raise GatewayProblem(
                f"the candidate config is the serving one ({self.baseline}): the patch "
                "changes nothing the gateway keeps"
            )
        self.view = self._ours(answer.get("rollout"))

    async def refresh(self) -> RolloutView | None:
        """Look again; the view keeps the last answer about this rollout."""
        view = self._ours(await self.api.rollout())
        if view is not None:
            self.view = view
            if view.final:
                self.over.set()
        return self.view

    def _ours(self, answer: Any) -> RolloutView | None:
        view = parse_view(answer) if isinstance(answer, dict) else None
        if view is None or view.candidate != self.candidate:
            return None
        return view

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll until the rollout is decided or `stop` is set (then `over` is set)."""
        try:
            while not self.over.is_set() and not stop.is_set():
                with contextlib.suppress(GatewayProblem, httpx.HTTPError):
                    await self.refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
        finally:
            self.over.set()


async def undo(api: GatewayAPI, rollouts: Sequence[PhaseRollout], reason: str) -> list[str]:
    """Leave the gateway as the run found it, as far as it can; what was done, in
    words. A rollout of the run still running is aborted; when the serving version is
    one the run promoted, the version that served before the run's first rollout is
    served again (`POST /admin/config/rollback`). A version someone else put there
    meanwhile is left alone."""
    started = [r for r in rollouts if r.candidate is not None]
    if not started:
        return []
    done: list[str] = []
    current = parse_view(await api.rollout())
    ours = {r.candidate for r in started}
    if current is not None and current.state == "running" and current.candidate in ours:
        if await api.abort_rollout(reason):
            done.append(f"aborted the rollout of config version {current.candidate}")
        current = parse_view(await api.rollout())  # it may have ended meanwhile
    promoted = {r.candidate for r in started if r.view is not None and r.view.state == "promoted"}
    if current is not None and current.state == "promoted":
        promoted |= {current.candidate} & ours
    found = started[0].baseline
    serving, _ = await api.serving_config()
    if serving in promoted and found is not None:
        await api.restore_version(found)
        done.append(
            f"restored config version {found} over {serving}, which this run's rollout "
            "promoted (POST /admin/config/rollback)"
        )
    elif serving != found:
        done.append(f"left config version {serving} serving: this run did not promote it")
    return done
