"""Order failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class OrderNotFound(NotFound, code="order_not_found"):
    """No such order (or not the caller's)."""


class InvalidTransition(Conflict, code="invalid_order_transition"):
    """The order cannot move from its status to the asked one."""


class OrderNotCancellable(Conflict, code="order_not_cancellable"):
    """The order cannot be cancelled: it is cancelled or refunded already, or its checkout is
    still running (cancel the checkout instead)."""


class AlreadyShipped(Conflict, code="already_shipped"):
    """The carrier has the parcel: the order can no longer be cancelled."""


class InvalidOrder(DomainError, code="order_amounts_mismatch", http_status=500):
    """The amounts an order was asked to be created with do not add up (subtotal is not the sum
    of the lines, or total is not subtotal - discount + shipping + tax): a bug upstream, refused
    before anything is written."""
