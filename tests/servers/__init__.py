"""Fake upstream providers that tests run on loopback (see `tests.support.ServerThread`)."""
