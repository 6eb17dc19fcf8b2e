"""Service level objectives: what each request counts toward, error budgets over
rolling windows, multi-window burn rates, the release gate, calibration, and the
equivalent Prometheus rules.

Never imports `gateway`: the gateway feeds completed requests in (as `Outcome`s,
slo/events.py) and reads the state out (`/admin/slo`, metrics, the change freeze).
"""
