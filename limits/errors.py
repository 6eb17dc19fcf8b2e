"""What the limits package raises."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The store did not answer in time, or not at all."""
