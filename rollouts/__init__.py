"""Guarded config rollouts: a new config version serves a share of requests (and/or
named tenants) as a canary beside the serving one, is judged continuously against it
by the release gate (slo/gate.py), and is promoted after enough healthy samples and
time, or rolled back at once when it burns.

The pieces, each its own module, none of which imports `gateway`:

- `config`: `reload.rollout:` in the gateway's config (RolloutSettings);
- `judge`: the verdict over the outcomes seen since the rollout began (the gate's
  rules, per SLO, plus the rollout's own availability objective);
- `machine`: the state machine (running -> promoted | rolled_back | aborted), pure,
  driven by verdicts, people and the clock;
- `split`: which requests the candidate serves.

The gateway composes them (gateway/rollouts.py): it builds and starts the candidate
runtime, routes requests, feeds outcomes, swaps or retires on a decision, and records
every step in the audit log. docs/reloading.md describes the behaviour.
"""
