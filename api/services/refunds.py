"""An operator's refund of part of an order: the API's checks, then the refund's workflow
(`workflows.order_refund`), whose first step records the request against what is left of the
capture in the payments database (so two refunds can never together exceed it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

from activities.shared import MoneyValue
from api.auth import Principal
from api.deps import Platform
from api.errors import ApiError
from api.schemas import OrderRefundIn, OrderRefundOut
from api.services.workflow_calls import answered, required_key
from domains.checkout.errors import IdempotencyKeyMismatch
from domains.orders import service as orders
from domains.payments import refunds
from domains.payments.errors import (
    IdempotencyKeyReused,
    PaymentNotCaptured,
    PaymentNotFound,
    RefundCurrencyMismatch,
    RefundExceedsCaptured,
)
from kit.db import columns
from kit.errors import DomainError
from kit.logging import get_logger
from kit.money import Money
from workflows.order_refund.client import OrderRefundClient
from workflows.order_refund.models import OrderRefundBody, OrderRefundInput, RefundDecision

T = TypeVar("T")
log = get_logger(__name__)

# The refusals the payments domain decides, answered with their own status and code.
REFUSALS: dict[str, type[DomainError]] = {
    error.code: error
    for error in (
        RefundExceedsCaptured,
        PaymentNotCaptured,
        PaymentNotFound,
        RefundCurrencyMismatch,
        IdempotencyKeyReused,
    )
}


def _temporal(order_id: uuid.UUID, call: Awaitable[T]) -> Awaitable[T]:
    """A call to the refund's workflow; Temporal not answering (or not finding it) is 503."""
    return answered(
        call,
        event="order_refund.temporal_unavailable",
        subject=("order_id", order_id),
        retry_hint="try again with the same Idempotency-Key",
        missing_is_unavailable=True,
    )


def _refused(body: OrderRefundBody) -> DomainError | ApiError:
    code, message = body.code or "internal_error", body.message or "the refund was refused"
    error = REFUSALS.get(code)
    return error(message) if error else ApiError(500, code, message)


async def refund_order(
    wired: Platform,
    order_id: uuid.UUID,
    caller: Principal,
    idempotency_key: str | None,
    body: OrderRefundIn,
) -> OrderRefundOut:
    """Refund part of an order's captured payment, once per Idempotency-Key: 202 with the refund
    (`pending` until the provider settles it). The same key and body answer the same refund; the
    same key with another body is 422 `idempotency_key_mismatch`; more than is left of the
    capture is 422 `refund_exceeds_captured`, an order whose payment captured nothing 409
    `payment_not_captured`."""
    key = required_key(idempotency_key)
    async with wired.databases["orders"].begin() as session:
        order = (await orders.get_order(session, order_id, None)).order
    amount = Money.of(body.amount, body.currency or order.currency)  # 422 invalid_money
    if amount.currency != order.currency:
        raise RefundCurrencyMismatch(
            f"the order is in {order.currency}, the refund in {amount.currency}"
        )
    request = OrderRefundInput(
        order_id=order.id,
        amount=MoneyValue.of(amount),
        reason=body.reason,
        requested_by=str(caller.user_id),
    )
    client = OrderRefundClient(wired.temporal)
    answer = await _temporal(order.id, client.request(request, key))
    asked = answer.request
    if (asked.amount.money(), asked.reason) != (amount, request.reason):
        raise IdempotencyKeyMismatch("this Idempotency-Key was used for another refund")
    if answer.decision == RefundDecision.REFUSED or answer.refund is None:
        raise _refused(answer)
    log.info(
        "ops.order.refund_requested", order_id=str(order.id), refund_id=str(answer.refund.refund_id)
    )
    return await refund(wired, answer.refund.refund_id)


async def refund(wired: Platform, refund_id: uuid.UUID) -> OrderRefundOut:
    """A refund asked for after the sale, as it stands now (404 `refund_not_found`)."""
    async with wired.databases["payments"].begin() as session:
        view = await refunds.request_view(session, refund_id)
        return OrderRefundOut.model_validate(
            {
                **columns(view.request),
                "refund_id": view.request.id,
                "return_id": view.return_id,
                "status": view.status,
                "failure_reason": (
                    view.refund.failure_reason if view.refund else view.request.failure_reason
                ),
                "updated_at": max(
                    view.request.updated_at,
                    view.refund.updated_at if view.refund else view.request.updated_at,
                ),
            },
            context={"currency": view.request.currency},
        )
