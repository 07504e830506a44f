"""Order failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class OrderNotFound(NotFound):
    """No such order (or not the caller's)."""

    code = "order_not_found"


class InvalidTransition(Conflict):
    """The order cannot move from its status to the asked one."""

    code = "invalid_order_transition"
