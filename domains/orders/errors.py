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


class ReturnNotFound(NotFound, code="return_not_found"):
    """No such return (or not the caller's)."""


class OrderNotReturnable(DomainError, code="order_not_returnable"):
    """Only a delivered order (or one partly refunded after its delivery) can be returned."""


class ReturnWindowClosed(DomainError, code="return_window_closed"):
    """The order was delivered longer ago than returns are accepted (RETURN_WINDOW_DAYS)."""


class ReturnQuantityExceeded(DomainError, code="return_quantity_exceeded"):
    """More units of a line than were bought less those already asked back in returns that were
    not rejected."""


class ReturnLineUnknown(DomainError, code="return_line_unknown"):
    """A returned line names no line of the order."""


class ReturnKeyMismatch(DomainError, code="idempotency_key_mismatch"):
    """The Idempotency-Key was used for another return request."""


class ReturnNotAwaiting(Conflict, code="return_not_awaiting"):
    """The return is not at the step the action is for (approve and reject a requested return,
    receive an approved one)."""
