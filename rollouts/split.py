"""Which requests a running canary serves.

Every request of the named tenants' subtrees, and a share of the rest drawn for each
request alone. Per request rather than per key: a gateway may have a handful of keys
(or none, the local default), and a share of a handful is all or nothing. What a
request's turns keep across versions (stored responses, receipts, limits) lives in
the process's State, which both versions share, so a conversation whose turns land on
different versions continues.
"""

from __future__ import annotations

import random
from collections.abc import Iterable


class Split:
    def __init__(self, share: float, tenants: Iterable[str], seed: str) -> None:
        self.share = share
        self.tenants = frozenset(tenants)
        # Seeded by the candidate's version: a replay of the same traffic draws the
        # same requests (tests, experiments); not a security boundary.
        self._draw = random.Random(seed).random

    def candidate_serves(self, chain: tuple[str, ...] | None) -> bool:
        """Does the candidate serve a request whose caller's tenant chain is `chain`
        (None: not known, e.g. no valid key)?"""
        if chain is not None and self.tenants and not self.tenants.isdisjoint(chain):
            return True
        return self.share > 0 and self._draw() < self.share
