"""Capped exponential backoff with jitter, for reconnecting to a config store.

After an etcd outage every replica reconnects; jitter spreads them out so the
store is not met by all of them at the same instant, and the cap bounds how long
a replica that kept failing waits once the store is back.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays `initial_s`, twice that, ... up to `max_s`; each delay is drawn from
    the upper half of its step ("equal jitter"), so it never drops below half."""

    def __init__(self, initial_s: float = 0.1, max_s: float = 5.0, factor: float = 2.0) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self._step = initial_s

    def next(self) -> float:
        step = self._step
        self._step = min(self.max_s, self._step * self.factor)
        return step / 2 + random.uniform(0, step / 2)

    def reset(self) -> None:
        self._step = self.initial_s
