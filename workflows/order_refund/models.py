"""The order refund's contract: its workflow id and payloads.

A payload is recorded in the workflow's history: changing a field's meaning is a workflow change.
Nothing personal travels here (ids, amounts, the operator's reason and user id).
"""

from __future__ import annotations

import hashlib
import uuid
from enum import StrEnum

from activities.payments.contract import RefundRequestResult
from activities.shared import MoneyValue, Payload

WORKFLOW_TYPE = "OrderRefundWorkflow"
_PREFIX = "order-refund-"


def workflow_id(order_id: uuid.UUID, idempotency_key: str) -> str:
    """`order-refund-<order_id>-<16 hex digits of the key's SHA-256>`: one refund per order and
    key, and the provider's idempotency key of its refund (no other refund shares it)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"{_PREFIX}{order_id}-{digest}"


class RefundDecision(StrEnum):
    """The answer to the request: accepted (recorded, then sent), or refused (nothing moved)."""

    ACCEPTED = "accepted"
    REFUSED = "refused"


class OrderRefundInput(Payload):
    """The refund an operator asked for: how much of the order, why, and who."""

    order_id: uuid.UUID
    amount: MoneyValue
    reason: str
    requested_by: str


class OrderRefundBody(Payload):
    """What the refund answers its callers: the request, the decision, and once accepted the
    refund (its id and where its money stands when the workflow last looked)."""

    request: OrderRefundInput
    decision: RefundDecision | None = None
    # Refused: the stable code and why (e.g. `refund_exceeds_captured`); accepted, why sending
    # the refund failed for good, if it did.
    code: str | None = None
    message: str | None = None
    refund: RefundRequestResult | None = None
