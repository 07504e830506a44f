"""Operators and money after the sale: disputes, failed refunds, their retry or resolution (the
work is in `api.services.aftersale`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Operator, PlatformDep
from api.routers.checkouts import IdempotencyKey
from api.schemas import (
    OpsDisputeList,
    OpsRefundList,
    OpsRefundOut,
    OrderRefundIn,
    OrderRefundOut,
    RefundRetryIn,
    RefundRetryOut,
    ResolutionIn,
)
from api.services import aftersale, refunds

router = APIRouter(tags=["operations"])


@router.get("/v1/ops/disputes", response_model=OpsDisputeList)
async def list_disputes(
    wired: PlatformDep,
    _: Operator,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> OpsDisputeList:
    """Disputed payments with order, amount, reason, status and evidence deadline (nearest
    first); `open=true` leaves out the decided ones."""
    return await aftersale.disputes(wired, open_only=open_only, limit=limit)


@router.get("/v1/ops/refunds/failed", response_model=OpsRefundList)
async def failed_refunds(
    wired: PlatformDep, _: Operator, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> OpsRefundList:
    """Failed refunds waiting for an operator (retry or resolve), oldest first."""
    return await aftersale.waiting_refunds(wired, limit)


@router.post(
    "/v1/ops/refunds/{refund_id}/retry",
    response_model=RefundRetryOut,
    responses={
        404: {"description": "`refund_not_found`"},
        409: {"description": "`refund_not_failed`, `refund_owned_by_return`"},
        422: {
            "description": "`refund_exceeds_captured`: less is left of the capture than the "
            "failed refund (e.g. refunded meanwhile in the provider's dashboard)"
        },
        502: {"description": "`provider_refused`: the provider refused the refund otherwise"},
    },
)
async def retry_refund(
    refund_id: uuid.UUID, body: RefundRetryIn, wired: PlatformDep, _: Operator
) -> RefundRetryOut:
    """Refund a failed refund's amount once more (after the buyer's card was mended); answered
    with the new refund. Once per refund: a repeated request answers the first retry. A retry
    refused (422 `refund_exceeds_captured` when less is left of the capture than the failed
    refund, 502 `provider_refused`) moves nothing: the failed refund still waits, to be
    resolved; asking again gets the same answer."""
    return await aftersale.retry(wired, refund_id, body.note)


@router.post("/v1/ops/refunds/{refund_id}/resolve", response_model=OpsRefundOut)
async def resolve_refund(
    refund_id: uuid.UUID, body: ResolutionIn, wired: PlatformDep, _: Operator
) -> OpsRefundOut:
    """Record, with a note, that a failed refund was settled by hand (e.g. a bank transfer)."""
    return await aftersale.resolve(wired, refund_id, body.note)


@router.post(
    "/v1/ops/orders/{order_id}/refunds",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderRefundOut,
    responses={
        400: {"description": "Idempotency-Key missing"},
        404: {"description": "no such order"},
        409: {"description": "`payment_not_captured`: the order's payment captured nothing"},
        422: {"description": "`refund_exceeds_captured`, `idempotency_key_mismatch`, ..."},
    },
)
async def refund_order(
    order_id: uuid.UUID,
    body: OrderRefundIn,
    wired: PlatformDep,
    caller: Operator,
    idempotency_key: IdempotencyKey = None,
) -> OrderRefundOut:
    """Refund part of an order's captured payment, once per Idempotency-Key (required): the
    refund is recorded against what is left of the capture (captured, less what was refunded and
    what refunds still pending hold: 422 `refund_exceeds_captured` above it), with the reason
    and the operator, then sent to the provider. The same key and body again answer the same
    refund (the money moves once); the same key with another body is 422."""
    return await refunds.refund_order(wired, order_id, caller, idempotency_key, body)


@router.get("/v1/ops/refunds/{refund_id}", response_model=OrderRefundOut)
async def get_refund(refund_id: uuid.UUID, wired: PlatformDep, _: Operator) -> OrderRefundOut:
    """A refund asked for through `POST /v1/ops/orders/{id}/refunds` and where its money stands
    (`pending`, `succeeded`, `failed`, `canceled`, `rejected`)."""
    return await refunds.refund(wired, refund_id)
