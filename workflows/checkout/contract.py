"""The checkout's contract: one home for the names others rely on.

Task queues, workflow ids, search-attribute keys and the vocabularies of a checkout (status, step,
payment status, failure code). The API, ops, workers, tests and the benchmark import them from
here; nothing spells them by hand.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from temporalio.common import SearchAttributeKey

from domains.checkout.statuses import (
    FINAL,
    CheckoutStatus,
    FailureCode,
    StepName,
    StepStatus,
)
from domains.payments.statuses import WAITING as WAITING_PAYMENT
from domains.payments.statuses import PaymentStatus
from workflows.ids import id_after

__all__ = [
    "CHECKOUT_STATUS",
    "CHECKOUT_STEP",
    "CUSTOMER_ID",
    "FINAL",
    "ORDER_NUMBER",
    "PAYMENT_NOT_REQUIRED",
    "RETURN_STATUS",
    "SEARCH_ATTRIBUTES",
    "WAITING_PAYMENT",
    "WORKFLOW_TYPE",
    "CheckoutStatus",
    "FailureCode",
    "PaymentStatus",
    "StepName",
    "StepStatus",
    "TaskQueue",
    "checkout_id_of",
    "reconcile_workflow_id",
    "workflow_id",
]


class TaskQueue(StrEnum):
    """One task queue per domain, named after it; the workflows run on `checkout`."""

    CHECKOUT = "checkout"
    PRODUCTS = "products"
    CART = "cart"
    COUPONS = "coupons"
    INVENTORY = "inventory"
    ORDERS = "orders"
    PAYMENTS = "payments"
    SHIPPING = "shipping"


CHECKOUT_STATUS = SearchAttributeKey.for_keyword("CheckoutStatus")
CHECKOUT_STEP = SearchAttributeKey.for_keyword("CheckoutStep")
ORDER_NUMBER = SearchAttributeKey.for_keyword("OrderNumber")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
# A return's status (ReturnWorkflow), as operators filter returns in the web UI.
RETURN_STATUS = SearchAttributeKey.for_keyword("ReturnStatus")
# Every key, as `temporal/dev-server.yml` and the time-skipping test server register them.
SEARCH_ATTRIBUTES = (CHECKOUT_STATUS, CHECKOUT_STEP, ORDER_NUMBER, CUSTOMER_ID, RETURN_STATUS)

# The status body's `payment.status` of a checkout whose total is zero: no payment is taken.
PAYMENT_NOT_REQUIRED = "not_required"

# The workflow's registered type, as visibility queries name it.
WORKFLOW_TYPE = "CheckoutWorkflow"
_PREFIX = "checkout-"


def workflow_id(checkout_id: uuid.UUID) -> str:
    """The workflow id of a checkout: `checkout-<checkout_id>`."""
    return f"{_PREFIX}{checkout_id}"


def checkout_id_of(workflow_id: str) -> uuid.UUID | None:
    """The checkout id in a checkout's workflow id (None for any other workflow)."""
    return id_after(_PREFIX, workflow_id)


def reconcile_workflow_id(intent_id: str) -> str:
    """The workflow id settling a late provider event for one intent."""
    return f"reconcile-{intent_id}"
