"""Tenants: the tree of organisations, teams and projects, their keys and roles."""
