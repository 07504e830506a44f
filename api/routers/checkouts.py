"""Checkouts: idempotent start, status, cancel, another payment method after a decline (the work
is in `api.services.checkouts`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import Anyone, Customer, PlatformDep
from api.schemas import CheckoutAccepted, CheckoutIn, CheckoutOut, PaymentRetryIn
from api.services import checkouts
from api.services.checkouts import MAX_WAIT_S

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
WaitS = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        description=f"0-{MAX_WAIT_S}: hold the request up to this many seconds until the status "
        "leaves `processing`, so clients need not poll (0, the default: answer at once; out of "
        "range: 422 `validation_error`)",
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
    wait_s: WaitS = 0,
) -> CheckoutAccepted:
    """Start a checkout of the caller's cart, once per Idempotency-Key. With `wait_s`, the
    answer is held until the status leaves `processing` (at most `wait_s` seconds).

    The same key and body again answer the same checkout (its current status); the same key with
    another body is 422. However many identical requests race, one checkout and one workflow.
    """
    accepted = await checkouts.start(wired, caller.user_id, idempotency_key, body, wait_s)
    response.headers["Location"] = f"/v1/checkouts/{accepted.checkout_id}"
    return accepted


@router.get("/v1/checkouts/{checkout_id}", response_model=CheckoutOut)
async def get_checkout(
    checkout_id: uuid.UUID, wired: PlatformDep, caller: Anyone, wait_s: WaitS = 0
) -> CheckoutOut:
    """A checkout's status (its buyer or an operator; 404 for anybody else). With `wait_s`, a
    checkout still `processing` is held until its status leaves `processing` (at most `wait_s`
    seconds), so clients need not poll."""
    owner = caller.owner_filter()
    return CheckoutOut.of(await checkouts.status(wired, checkout_id, owner, wait_s))


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
