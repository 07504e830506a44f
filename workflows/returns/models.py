"""The return's contract: its workflow id, vocabulary and payloads.

A payload is recorded in the workflow's history: changing a field's meaning is a workflow change.
Nothing personal travels here (ids, quantities, amounts and an operator's note only): the return
label is bought from the address the order was delivered to, read by the shipping domain.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from activities.shared import MoneyValue, Payload
from domains.orders.statuses import ReturnStatus
from workflows.ids import id_after

WORKFLOW_TYPE = "ReturnWorkflow"
_PREFIX = "return-"
# The signal by which the carrier's tracking reports the return parcel delivered.
CARRIER_DELIVERED = "carrier_delivered"


def workflow_id(return_id: uuid.UUID) -> str:
    """The workflow id of a return: `return-<return_id>`."""
    return f"{_PREFIX}{return_id}"


def return_id_of(workflow_id: str) -> uuid.UUID | None:
    """The return a workflow id names, None for any other id."""
    return id_after(_PREFIX, workflow_id)


class ReturnLineValue(Payload):
    """Units of an order line being returned."""

    order_item_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int = Field(ge=1)
    # The line's share of the refund (what the payments domain records it gives back).
    refund: MoneyValue


class ReturnInput(Payload):
    """A return as it was asked for and recorded by the orders domain."""

    return_id: uuid.UUID
    order_id: uuid.UUID
    refund: MoneyValue
    lines: list[ReturnLineValue]
    # Approved by policy (RETURN_AUTO_APPROVE), without waiting for an operator.
    auto_approve: bool = False
    # Days the parcel may take to come back once approved (RETURN_SHIP_BACK_DAYS); None: no
    # limit (returns started before the limit existed).
    ship_back_days: int | None = Field(default=None, ge=1)


class ReceivedLine(Payload):
    """Units of a return's line that came back, and whether they go back to stock."""

    order_item_id: uuid.UUID
    quantity: int = Field(ge=0)
    restock: bool


class Receipt(Payload):
    """The return parcel came back: an operator's count, or the carrier's delivery (every unit,
    restocked)."""

    lines: list[ReceivedLine] = Field(default_factory=list)
    by: Literal["operator", "carrier"] = "operator"


class Resolution(Payload):
    """An operator's note on a rejected return: why it was rejected (optional)."""

    note: str | None = None


class FailedStep(Payload):
    """A step of the return that failed for good, and why."""

    name: str
    error: str


class ReturnBody(Payload):
    """What the return answers its callers (the orders database has the full record)."""

    return_id: uuid.UUID
    status: ReturnStatus
    failed: list[FailedStep] = Field(default_factory=list)
    note: str | None = None
    # Where the refund's money stands at the provider, once asked for.
    refund_status: str | None = None
