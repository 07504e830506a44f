"""Money after the sale for operators: disputes, failed refunds waiting for them, and their two
ways out (retry the refund, or resolve it with a note once settled by hand)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowFailureError

from activities.payments.contract import RetryRefundInput, RetryRefundResult
from activities.shared import carried_failure
from api.deps import Platform
from api.errors import ApiError
from api.schemas import OpsDisputeList, OpsDisputeOut, OpsRefundList, OpsRefundOut, RefundRetryOut
from domains.checkout.statuses import FailureCode
from domains.orders import service as orders
from domains.payments import aftersale
from domains.payments.errors import RefundExceedsCaptured, RefundNotFailed, RefundNotFound
from domains.payments.statuses import RefundResolution
from kit.db import columns
from kit.logging import get_logger
from workflows.aftersale_client import retry_refund

log = get_logger(__name__)

# The domain errors a retry's workflow can fail with, by code: answered as the API answers them.
RETRY_REFUSALS = {e.code: e for e in (RefundExceedsCaptured, RefundNotFailed, RefundNotFound)}


async def disputes(wired: Platform, *, open_only: bool, limit: int) -> OpsDisputeList:
    """Disputed payments with their orders, the nearest evidence deadline first."""
    async with wired.databases["payments"].begin() as session:
        views = await aftersale.disputes(session, open_only=open_only, limit=limit)
    order_ids = [v.payment.order_id for v in views if v.payment.order_id is not None]
    async with wired.databases["orders"].begin() as session:
        numbers = await orders.order_numbers(session, order_ids)
    data = [
        OpsDisputeOut.model_validate(
            {
                **columns(v.dispute),
                "order_id": v.payment.order_id,
                "order_number": numbers.get(v.payment.order_id) if v.payment.order_id else None,
                "checkout_id": v.payment.checkout_id,
            },
            context={"currency": v.dispute.currency},
        )
        for v in views
    ]
    return OpsDisputeList(data=data)


def _refund_out(view: aftersale.RefundView) -> OpsRefundOut:
    return OpsRefundOut.model_validate(
        {
            **columns(view.refund),
            "order_id": view.payment.order_id,
            "checkout_id": view.payment.checkout_id,
            "purpose": view.purpose,
            "return_id": view.return_id,
        },
        context={"currency": view.refund.currency},
    )


async def waiting_refunds(wired: Platform, limit: int) -> OpsRefundList:
    """Failed refunds no operator has settled yet, oldest first."""
    async with wired.databases["payments"].begin() as session:
        views = await aftersale.waiting_refunds(session, limit)
        return OpsRefundList(data=[_refund_out(v) for v in views])


async def retry(wired: Platform, refund_id: uuid.UUID, note: str | None) -> RefundRetryOut:
    """Refund a failed refund's amount once more (once per refund: a repeated request answers
    the first retry); 404 `refund_not_found`, 409 `refund_not_failed` for one not waiting, 409
    `refund_owned_by_return` for a return's (its return asks again itself: retrying here too
    could give the money back twice; recording it resolved here moves no money and is allowed).
    422 `refund_exceeds_captured` when less is left of the capture than the failed refund (as
    the payments database or, failing that, the provider knows it), 502 `provider_refused` when
    the provider refuses it otherwise: nothing moved, the failed refund still waits (resolve
    it), and a repeated request gets the same answer."""
    async with wired.databases["payments"].begin() as session:
        await aftersale.retryable_refund(session, refund_id)
    made = await retried(wired.temporal, RetryRefundInput(refund_id=refund_id, note=note))
    async with wired.databases["payments"].begin() as session:
        view = await aftersale.refund(session, refund_id)
        out = _refund_out(view)
    log.info("ops.refund.retried", refund_id=str(refund_id), new_refund=made.provider_refund_id)
    return RefundRetryOut(
        refund=out, new_provider_refund_id=made.provider_refund_id, new_status=made.status
    )


async def retried(temporal: Client, retry: RetryRefundInput) -> RetryRefundResult:
    """Run the retry's workflow and answer its new refund. The workflow failing with a domain
    error (`refund_exceeds_captured`, `refund_not_failed`, `refund_not_found`) raises that error;
    with `provider_refused` it is 502 `provider_refused` (the provider's code in the detail);
    anything else propagates."""
    try:
        return await retry_refund(temporal, retry)
    except WorkflowFailureError as exc:
        refusal = carried_failure(exc.cause)
        if refusal is None:
            raise
        details: dict[str, Any] = dict(refusal.details[0]) if refusal.details else {}
        details.pop("code", None)
        log.warning(
            "ops.refund.retry_refused",
            refund_id=str(retry.refund_id),
            code=refusal.type,
            provider_code=details.get("provider_code"),
        )
        known = RETRY_REFUSALS.get(refusal.type or "")
        if known is not None:
            raise known(refusal.message, **details) from exc
        if refusal.type == FailureCode.PROVIDER_REFUSED.value:
            provider_code = str(details.get("provider_code") or "unknown")
            raise ApiError(
                502,
                "provider_refused",
                f"the payment provider refused the refund ({provider_code}); nothing moved: "
                "settle the failed refund by hand and resolve it",
                provider_code=provider_code,
            ) from exc
        raise


async def resolve(wired: Platform, refund_id: uuid.UUID, note: str) -> OpsRefundOut:
    """Record that an operator settled a failed refund by hand (a repeat is the same record)."""
    async with wired.databases["payments"].begin() as session:
        view = await aftersale.settle_refund(session, refund_id, RefundResolution.RESOLVED, note)
        out = _refund_out(view)
    log.info("ops.refund.resolved", refund_id=str(refund_id))
    return out
