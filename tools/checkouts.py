"""Client-side helpers to start and follow checkouts (used by the API, the tests, the benchmark)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from workflows.checkout import CHECKOUT_STATUS, CUSTOMER_ID, TASK_QUEUE, CheckoutWorkflow
from workflows.models import Address, CheckoutInput, CheckoutStatusBody


def workflow_id(checkout_id: uuid.UUID) -> str:
    """The workflow id of a checkout (CONTRACT.md section 5)."""
    return f"checkout-{checkout_id}"


def demo_address() -> Address:
    """A valid shipping address for tests and demos."""
    return Address(
        name="Ada Lovelace",
        line1="12 St James's Square",
        city="London",
        postal_code="SW1Y 4JH",
        country="GB",
    )


def new_input(
    *,
    user_id: uuid.UUID,
    cart_id: uuid.UUID,
    token: str = "tok_visa",
    coupon_code: str | None = None,
    payment_timeout: timedelta = timedelta(minutes=15),
    checkout_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> CheckoutInput:
    """A checkout input with fresh ids."""
    key = idempotency_key or uuid.uuid4().hex
    return CheckoutInput(
        checkout_id=checkout_id or uuid.uuid4(),
        user_id=user_id,
        cart_id=cart_id,
        idempotency_key=key,
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
        coupon_code=coupon_code,
        shipping_address=demo_address(),
        payment_token=token,
        payment_timeout_s=int(payment_timeout.total_seconds()),
    )


async def start_checkout(
    client: Client, checkout: CheckoutInput
) -> WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]:
    """Start the checkout's workflow; starting it again returns the running one, never a second."""
    return await client.start_workflow(
        CheckoutWorkflow.run,
        checkout,
        id=workflow_id(checkout.checkout_id),
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A checkout that ended is never run again under its id.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(CUSTOMER_ID, str(checkout.user_id)),
                SearchAttributePair(CHECKOUT_STATUS, "processing"),
            ]
        ),
    )
