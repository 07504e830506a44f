"""The order cancellation's contract: its workflow id, vocabulary and payloads.

A payload is recorded in the workflow's history: changing a field's meaning is a workflow change.
Nothing personal travels here (ids, amounts and the operator's note only).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from activities.shared import MoneyValue, Payload

WORKFLOW_TYPE = "OrderCancelWorkflow"
_PREFIX = "order-cancel-"


def workflow_id(order_id: uuid.UUID) -> str:
    """The workflow id of an order's cancellation: `order-cancel-<order_id>` (one per order)."""
    return f"{_PREFIX}{order_id}"


class CancelStatus(StrEnum):
    """Where a cancellation stands."""

    CLAIMING = "claiming"  # taking the parcel back from the carrier
    CANCELLING = "cancelling"  # accepted: refunding, restocking, releasing the coupon
    NEEDS_ATTENTION = "needs_attention"  # a step failed for good: an operator retries/resolves
    CANCELLED = "cancelled"  # the order is cancelled
    REFUSED = "refused"  # the carrier had the parcel: nothing was changed


class Decision(StrEnum):
    """The answer to the cancel request, decided once by the shipping domain."""

    ACCEPTED = "accepted"
    ALREADY_SHIPPED = "already_shipped"


class OrderCancelInput(Payload):
    """The order to cancel, as the API read it."""

    order_id: uuid.UUID
    checkout_id: uuid.UUID
    total: MoneyValue
    requested_by: Literal["buyer", "operator"]


class FailedStep(Payload):
    """A step of the cancellation that failed for good, and why."""

    name: str
    error: str


class OrderCancelBody(Payload):
    """What the cancellation answers its callers."""

    order_id: uuid.UUID
    status: CancelStatus
    decision: Decision | None = None
    failed: list[FailedStep] = Field(default_factory=list)
    note: str | None = None
