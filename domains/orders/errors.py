"""Order failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class OrderNotFound(NotFound, code="order_not_found"):
    """No such order (or not the caller's)."""


class InvalidTransition(Conflict, code="invalid_order_transition"):
    """The order cannot move from its status to the asked one."""
