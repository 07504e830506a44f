"""Checkouts: idempotent start, status, cancel, another payment method after a decline (the work
is in `api.services.checkouts`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from api.deps import Anyone, Customer, PlatformDep
from api.schemas import CheckoutAccepted, CheckoutIn, CheckoutOut, PaymentRetryIn
from api.services import checkouts

router = APIRouter(tags=["checkouts"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="1-255 characters; required (else 400)"),
]
RequestKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="optional, 1-255 characters: the same key again answers the first call's "
        "result (without one, the request is identified by the checkout and the action)",
    ),
]


@router.post(
    "/v1/checkouts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
    responses={400: {"description": "Idempotency-Key missing"}, 429: {"description": "too many"}},
)
async def start(
    body: CheckoutIn,
    response: Response,
    wired: PlatformDep,
    caller: Customer,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutAccepted:
    """Start a checkout of the caller's cart, once per Idempotency-Key.

    The same key and body again answer the same checkout (its current status); the same key with
    another body is 422. However many identical requests race, one checkout and one workflow.
    """
    accepted = await checkouts.start(wired, caller.user_id, idempotency_key, body)
    response.headers["Location"] = f"/v1/checkouts/{accepted.checkout_id}"
    return accepted


@router.get("/v1/checkouts/{checkout_id}", response_model=CheckoutOut)
async def get_checkout(checkout_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> CheckoutOut:
    """A checkout's status (its buyer or an operator; 404 for anybody else)."""
    return CheckoutOut.of(await checkouts.status(wired, checkout_id, caller.owner_filter()))


@router.post(
    "/v1/checkouts/{checkout_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
)
async def cancel(
    checkout_id: uuid.UUID,
    wired: PlatformDep,
    caller: Customer,
    idempotency_key: RequestKey = None,
) -> CheckoutAccepted:
    """Cancel before the payment is captured (compensation runs); 409 after. Sent again (a
    retry after a timeout), it answers the first call's result."""
    return await checkouts.cancel(wired, checkout_id, caller.owner_filter(), idempotency_key)


@router.post(
    "/v1/checkouts/{checkout_id}/payment",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
    responses={409: {"description": "not waiting for a payment method"}},
)
async def retry_payment(
    checkout_id: uuid.UUID,
    body: PaymentRetryIn,
    wired: PlatformDep,
    caller: Customer,
    idempotency_key: RequestKey = None,
) -> CheckoutAccepted:
    """Another payment method for a checkout whose card was declined (started with
    `on_decline: retry`, waiting at `requires_payment_method`): the same payment intent is
    confirmed with it. 409 `checkout_not_awaiting_payment_method` at any other time."""
    return await checkouts.retry_payment(
        wired, checkout_id, caller.owner_filter(), body, idempotency_key
    )
