"""Operators: find checkouts through Temporal visibility, see why they are stuck, end them (the
work is in `api.services.ops`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Operator, PlatformDep
from api.routers.checkouts import RequestKey
from api.schemas import (
    CheckoutAccepted,
    OperatorCancelOut,
    OpsCheckoutDetail,
    OpsCheckoutList,
    ResolutionIn,
    StuckList,
)
from api.services import ops
from workflows.checkout.contract import CheckoutStatus, StepName

router = APIRouter(tags=["operations"])


@router.get("/v1/ops/checkouts", response_model=OpsCheckoutList)
async def list_checkouts(
    wired: PlatformDep,
    _: Operator,
    status: Annotated[CheckoutStatus | None, Query()] = None,
    step: Annotated[StepName | None, Query()] = None,
    older_than_s: Annotated[float | None, Query(ge=0, le=315_360_000)] = None,  # ten years
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> OpsCheckoutList:
    """Checkouts from Temporal visibility (search attributes), each with its web-UI link."""
    return await ops.list_checkouts(wired, status, step, older_than_s, limit)


@router.get("/v1/ops/checkouts/stuck", response_model=StuckList)
async def stuck_checkouts(wired: PlatformDep, _: Operator) -> StuckList:
    """Running checkouts past their step's deadline, past the payment window, or retrying."""
    return await ops.stuck(wired)


@router.post(
    "/v1/ops/checkouts/{checkout_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperatorCancelOut,
)
async def force_cancel(
    checkout_id: uuid.UUID, wired: PlatformDep, _: Operator, idempotency_key: RequestKey = None
) -> OperatorCancelOut:
    """End a running checkout: compensation runs, and a captured payment is refunded; answered
    once the money is settled, with what happened to it (`money`)."""
    return await ops.force_cancel(wired, checkout_id, idempotency_key)


@router.post(
    "/v1/ops/checkouts/{checkout_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
)
async def retry(
    checkout_id: uuid.UUID, wired: PlatformDep, _: Operator, idempotency_key: RequestKey = None
) -> CheckoutAccepted:
    """Run a checkout's failed compensations again (it waits at step needs_attention)."""
    return await ops.retry(wired, checkout_id, idempotency_key)


@router.post(
    "/v1/ops/checkouts/{checkout_id}/resolve",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
)
async def resolve(
    checkout_id: uuid.UUID,
    body: ResolutionIn,
    wired: PlatformDep,
    _: Operator,
    idempotency_key: RequestKey = None,
) -> CheckoutAccepted:
    """Record, with a note, that what the checkout could not give back was settled by hand."""
    return await ops.resolve(wired, checkout_id, body.note, idempotency_key)


@router.get("/v1/ops/checkouts/{checkout_id}", response_model=OpsCheckoutDetail)
async def show_checkout(
    checkout_id: uuid.UUID, wired: PlatformDep, _: Operator
) -> OpsCheckoutDetail:
    """A checkout's status, recorded steps, pending activities with their last failure, links."""
    return await ops.show(wired, checkout_id)
