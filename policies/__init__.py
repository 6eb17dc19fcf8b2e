"""Policies: CEL rules compiled per Runtime, evaluated per request, with shadow and canary sets."""
