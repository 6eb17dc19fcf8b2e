"""Hypothesis strategies the limit tests share (tests/test_limits.py against a
reference model, tests/test_limits_redis.py against the memory store)."""

from __future__ import annotations

from hypothesis import strategies as st

from limits.config import LimitsConfig, SpendLimit

#: Small limits, so a short sequence of admissions reaches them.
configs = st.builds(
    LimitsConfig,
    requests_per_minute=st.none() | st.integers(1, 6),
    tokens_per_minute=st.none() | st.integers(20, 300),
    max_concurrent=st.none() | st.integers(1, 3),
    spend_usd=st.none()
    | st.builds(
        SpendLimit, amount=st.sampled_from([0.2, 0.5, 1.0]), per=st.sampled_from(["day", "month"])
    ),
)
#: ("admit", which key, tokens, spend in hundredths of a cent); zero estimates included:
#: they once broke the Lua scripts.
admits = st.tuples(st.just("admit"), st.integers(0, 1), st.integers(0, 80), st.integers(0, 40))
