"""Checkouts: idempotent start, status, cancel."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import Anyone, Customer, PlatformDep
from api.errors import ApiError
from api.metrics import CHECKOUT_STARTS
from api.schemas import CheckoutAccepted, CheckoutIn, CheckoutOut
from domains.cart import service as carts
from domains.cart.errors import CartEmpty
from domains.checkout import service as checkouts
from domains.checkout.errors import AlreadyCaptured
from domains.checkout.models import CheckoutSession, CheckoutStatus
from kit.logging import get_logger
from kit.money import Money
from tools.checkouts import start_checkout, workflow_id
from workflows.checkout import CheckoutWorkflow
from workflows.models import (
    Address,
    CheckoutInput,
    CheckoutStatusBody,
    Failure,
    FailureCode,
    NextAction,
    OrderSummary,
    PaymentSummary,
)

log = get_logger(__name__)
router = APIRouter(tags=["checkouts"])

# The statuses a checkout ends in.
ENDED = checkouts.FINAL
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="1-255 characters; required (else 400)"),
]


def fingerprint(body: CheckoutIn) -> str:
    """The request's identity for idempotency: its parsed content, not its bytes or key order."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def body_from_row(row: CheckoutSession) -> CheckoutStatusBody:
    """The status body as the checkout database last recorded it."""
    order = None
    if row.order_id and row.order_number and row.total_amount is not None and row.currency:
        order = OrderSummary(
            id=row.order_id,
            order_number=row.order_number,
            total_amount=row.total_amount,
            currency=row.currency,
        )
    payment = None
    if row.payment_status:
        action = NextAction(**row.next_action) if row.next_action else None
        payment = PaymentSummary(status=row.payment_status, next_action=action)
    failure = None
    if row.failure_code:
        failure = Failure(code=FailureCode(row.failure_code), message=row.failure_message or "")
    return CheckoutStatusBody(
        checkout_id=row.id,
        status=row.status,
        step=row.step,
        order=order,
        payment=payment,
        failure=failure,
    )


def checkout_out(body: CheckoutStatusBody) -> CheckoutOut:
    """The API's view of a status body (money as a decimal string of the currency's precision)."""
    data = body.model_dump(mode="json")
    if body.order is not None:
        total = Money.of(body.order.total_amount.normalize(), body.order.currency)
        data["order"]["total_amount"] = str(total.amount)
    return CheckoutOut.model_validate(data)


async def current_status(wired: PlatformDep, row: CheckoutSession) -> CheckoutStatusBody:
    """From the workflow while it runs, from the checkout database once it has ended."""
    if CheckoutStatus(row.status) not in ENDED:
        handle = wired.temporal.get_workflow_handle(workflow_id(row.id))
        try:
            body: CheckoutStatusBody = await handle.query(CheckoutWorkflow.status)
            return body
        except RPCError as exc:
            log.info("checkouts.query_fallback", checkout_id=str(row.id), reason=exc.message)
    return body_from_row(row)


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
    if not idempotency_key or not idempotency_key.strip() or len(idempotency_key) > 255:
        raise ApiError(
            400,
            "idempotency_key_required",
            "an Idempotency-Key header of 1-255 characters is required",
        )
    wait = wired.checkout_limiter.take(str(caller.user_id), idempotency_key)
    if wait:
        CHECKOUT_STARTS.labels("rate_limited").inc()
        raise ApiError(
            429,
            "rate_limited",
            "too many checkouts started; slow down",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    request_hash = fingerprint(body)
    async with wired.databases["checkout"].begin() as session:
        existing = await checkouts.find_by_key(session, caller.user_id, idempotency_key)
    if existing is None:
        async with wired.databases["cart"].begin() as session:
            _, items = await carts.get_cart(session, body.cart_id, caller.user_id)
        if not items:
            raise CartEmpty("the cart has no items")
    async with wired.databases["checkout"].begin() as session:
        row, created = await checkouts.begin(
            session,
            user_id=caller.user_id,
            cart_id=body.cart_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
    checkout = CheckoutInput(
        checkout_id=row.id,
        user_id=caller.user_id,
        cart_id=body.cart_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        coupon_code=body.coupon_code,
        shipping_address=Address.model_validate(body.shipping_address.model_dump()),
        billing_address=(
            Address.model_validate(body.billing_address.model_dump())
            if body.billing_address
            else None
        ),
        payment_provider=body.payment.provider,
        payment_token=body.payment.token,
        payment_timeout_s=int(wired.settings.checkout_payment_timeout.total_seconds()),
    )
    try:
        # USE_EXISTING: a racing twin or a retry joins the running workflow, never starts another.
        await start_checkout(wired.temporal, checkout)
    except WorkflowAlreadyStartedError:
        pass  # it ran and ended (ids are never reused): the answer is its recorded outcome
    except RPCError as exc:
        log.error("checkouts.start_failed", checkout_id=str(row.id), reason=exc.message)
        raise ApiError(
            503, "temporal_unavailable", "try again with the same Idempotency-Key"
        ) from exc
    CHECKOUT_STARTS.labels("started" if created else "replayed").inc()
    response.headers["Location"] = f"/v1/checkouts/{row.id}"
    if created:
        # Just started: querying would cost a workflow task on the worker to learn "processing".
        return CheckoutAccepted(checkout_id=row.id, status=CheckoutStatus.PROCESSING.value)
    current = await current_status(wired, row)
    return CheckoutAccepted(checkout_id=row.id, status=current.status)


async def _row(wired: PlatformDep, checkout_id: uuid.UUID, caller: Anyone) -> CheckoutSession:
    async with wired.databases["checkout"].begin() as session:
        return await checkouts.get_session(session, checkout_id, caller.owner_filter())


@router.get("/v1/checkouts/{checkout_id}", response_model=CheckoutOut)
async def get_checkout(checkout_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> CheckoutOut:
    """A checkout's status (its buyer or an operator; 404 for anybody else)."""
    row = await _row(wired, checkout_id, caller)
    return checkout_out(await current_status(wired, row))


@router.post(
    "/v1/checkouts/{checkout_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
)
async def cancel(checkout_id: uuid.UUID, wired: PlatformDep, caller: Customer) -> CheckoutAccepted:
    """Cancel before the payment is captured (compensation runs); 409 after."""
    row = await _row(wired, checkout_id, caller)
    if CheckoutStatus(row.status) in ENDED:
        raise AlreadyCaptured(f"the checkout has ended ({row.status})")
    handle = wired.temporal.get_workflow_handle(workflow_id(row.id))
    try:
        honoured: bool = await handle.execute_update(CheckoutWorkflow.request_cancel)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        raise AlreadyCaptured("the checkout can no longer be cancelled") from exc
    if not honoured:
        raise AlreadyCaptured("the payment is captured; the checkout can no longer be cancelled")
    return CheckoutAccepted(checkout_id=row.id, status=CheckoutStatus.PROCESSING.value)
