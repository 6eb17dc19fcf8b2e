"""The admin page (`GET /admin/ui`): one self-contained page served by the gateway,
polling `GET /admin/ui/state` for routing, SLOs, limits, chaos, config versions and
rollouts, and recent audit decisions, scoped by the viewer's tenant (docs/observability.md).

`resource.py` holds the handlers, `state.py` builds the state from the admin
endpoints' own functions, `history.py` keeps the sparklines' points, `decisions.py`
reads the audit log, and `static/` is the page, its script and its style sheet.
"""

from gateway.admin.ui.resource import UiAdmin

__all__ = ["UiAdmin"]
