"""Operators and money after the sale: disputes, failed refunds, their retry or resolution (the
work is in `api.services.aftersale`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Operator, PlatformDep
from api.schemas import (
    OpsDisputeList,
    OpsRefundList,
    OpsRefundOut,
    RefundRetryIn,
    RefundRetryOut,
    ResolutionIn,
)
from api.services import aftersale

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


@router.post("/v1/ops/refunds/{refund_id}/retry", response_model=RefundRetryOut)
async def retry_refund(
    refund_id: uuid.UUID, body: RefundRetryIn, wired: PlatformDep, _: Operator
) -> RefundRetryOut:
    """Refund a failed refund's amount once more (after the buyer's card was mended); answered
    with the new refund. Once per refund: a repeated request answers the first retry."""
    return await aftersale.retry(wired, refund_id, body.note)


@router.post("/v1/ops/refunds/{refund_id}/resolve", response_model=OpsRefundOut)
async def resolve_refund(
    refund_id: uuid.UUID, body: ResolutionIn, wired: PlatformDep, _: Operator
) -> OpsRefundOut:
    """Record, with a note, that a failed refund was settled by hand (e.g. a bank transfer)."""
    return await aftersale.resolve(wired, refund_id, body.note)
