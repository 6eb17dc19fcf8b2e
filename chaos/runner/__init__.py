"""The chaos experiment runner: `seawall chaos run FILE`.

An experiment (YAML, see docs/chaos-experiments.md) sends open-loop load to a
gateway, injects faults phase by phase (admin-scheduled or in the chaos header),
checks a steady-state hypothesis before and after the faults and probes of its own
during them, and rolls every fault back whatever happens. It talks to the gateway
over HTTP only, so it never imports `gateway` and works against any seawall.
"""
