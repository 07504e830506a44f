"""Returns: a buyer sends units of a delivered order back; operators decide, receive, retry and
resolve them (read through `api.services.returns`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Anyone, Customer, Operator, PlatformDep
from api.routers.checkouts import RequestKey
from api.schemas import ReceiveIn, ResolutionIn, ReturnIn, ReturnList, ReturnOut
from api.services import returns
from domains.orders.statuses import ReturnStatus

router = APIRouter(tags=["returns"])


@router.post(
    "/v1/orders/{order_id}/returns",
    status_code=status.HTTP_201_CREATED,
    response_model=ReturnOut,
    responses={
        400: {"description": "`idempotency_key_required`"},
        404: {"description": "no such order (or not the caller's)"},
        422: {
            "description": "`order_not_returnable`, `return_window_closed`, "
            "`return_quantity_exceeded`, `return_line_unknown`, `idempotency_key_mismatch`"
        },
    },
)
async def request_return(
    order_id: uuid.UUID,
    body: ReturnIn,
    wired: PlatformDep,
    caller: Customer,
    idempotency_key: RequestKey = None,
) -> ReturnOut:
    """Return units of a delivered order within RETURN_WINDOW_DAYS of its delivery: never more
    of a line than was bought less what returns not rejected already ask for. The same
    Idempotency-Key and body answer the same return; another body under the key is 422."""
    return await returns.request(wired, order_id, body, caller, idempotency_key)


@router.get("/v1/orders/{order_id}/returns", response_model=ReturnList)
async def order_returns(order_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> ReturnList:
    """An order's returns, oldest first (its buyer, or an operator)."""
    return ReturnList(data=await returns.of_order(wired, order_id, caller))


@router.get("/v1/returns/{return_id}", response_model=ReturnOut)
async def get_return(return_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> ReturnOut:
    """One return with its lines, label, refund and transitions (its buyer, or an operator)."""
    return await returns.get(wired, return_id, caller)


@router.get("/v1/ops/returns", response_model=ReturnList, tags=["operations"])
async def list_returns(
    wired: PlatformDep,
    _: Operator,
    status: ReturnStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ReturnList:
    """Returns, oldest first; `?status=requested` lists those waiting for a decision,
    `?status=needs_attention` those waiting for an operator's retry or resolve."""
    return ReturnList(data=await returns.waiting(wired, status, limit))


@router.post("/v1/ops/returns/{return_id}/approve", response_model=ReturnOut, tags=["operations"])
async def approve_return(
    return_id: uuid.UUID, wired: PlatformDep, _: Operator, idempotency_key: RequestKey = None
) -> ReturnOut:
    """Approve a requested return: a return label is bought from the carrier. 409
    `return_not_awaiting` unless it is `requested`."""
    return await returns.decide(wired, return_id, "approve", idempotency_key=idempotency_key)


@router.post("/v1/ops/returns/{return_id}/reject", response_model=ReturnOut, tags=["operations"])
async def reject_return(
    return_id: uuid.UUID,
    wired: PlatformDep,
    _: Operator,
    body: ResolutionIn | None = None,
    idempotency_key: RequestKey = None,
) -> ReturnOut:
    """Reject a requested return, optionally with a note `{note}` (its units may be asked for
    again). 409 `return_not_awaiting` unless it is `requested`."""
    note = body.note if body else None
    return await returns.decide(
        wired, return_id, "reject", note=note, idempotency_key=idempotency_key
    )


@router.post("/v1/ops/returns/{return_id}/receive", response_model=ReturnOut, tags=["operations"])
async def receive_return(
    return_id: uuid.UUID,
    body: ReceiveIn,
    wired: PlatformDep,
    _: Operator,
    idempotency_key: RequestKey = None,
) -> ReturnOut:
    """The parcel came back: per line, how many units and whether they go back to stock (a line
    not named came back whole, not restocked); then the refund is made. 409
    `return_not_awaiting` unless it is `approved`."""
    return await returns.decide(
        wired, return_id, "receive", receipt=body, idempotency_key=idempotency_key
    )


@router.post("/v1/ops/returns/{return_id}/retry", response_model=ReturnOut, tags=["operations"])
async def retry_return(
    return_id: uuid.UUID, wired: PlatformDep, _: Operator, idempotency_key: RequestKey = None
) -> ReturnOut:
    """Run a return's failed step again (it waits at `needs_attention`)."""
    return await returns.attend(wired, return_id, None, idempotency_key)


@router.post("/v1/ops/returns/{return_id}/resolve", response_model=ReturnOut, tags=["operations"])
async def resolve_return(
    return_id: uuid.UUID,
    body: ResolutionIn,
    wired: PlatformDep,
    _: Operator,
    idempotency_key: RequestKey = None,
) -> ReturnOut:
    """Record, with a note, that a return's failed step was settled by hand (a refund paid
    another way ends the return `refunded`)."""
    return await returns.attend(wired, return_id, body.note, idempotency_key)
