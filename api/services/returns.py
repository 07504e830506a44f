"""Returns of delivered orders: recorded by the orders domain (the order locked while the units
are counted), then run by the return's workflow (`workflows.returns`), which operators decide,
receive, retry and resolve through updates."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.shared import MoneyValue
from api.auth import Principal
from api.deps import Platform
from api.schemas import ReceiveIn, ReturnIn, ReturnOut, TransitionOut
from api.services.checkouts import update_id
from api.services.workflow_calls import answered, required_key
from api.services.workflow_calls import attend as attend_workflow
from domains.orders import returns
from domains.orders.errors import ReturnLineUnknown, ReturnNotAwaiting
from domains.orders.statuses import ReturnStatus
from kit.logging import get_logger
from kit.money import Money
from kit.settings import ReturnSettings
from workflows.returns.client import ReturnClient
from workflows.returns.models import Receipt, ReceivedLine, ReturnInput, ReturnLineValue

T = TypeVar("T")
log = get_logger(__name__)


def _temporal(return_id: uuid.UUID, call: Awaitable[T]) -> Awaitable[T]:
    """A call to the return's workflow; Temporal not answering is 503 (a missing run is the
    caller's to handle)."""
    return answered(call, event="returns.temporal_unavailable", subject=("return_id", return_id))


def return_out(found: returns.ReturnView) -> ReturnOut:
    """The API's view of a return, amounts in its currency."""
    row = found.order_return
    label = (
        {"carrier": row.carrier, "tracking_number": row.tracking_number, "label_url": row.label_url}
        if row.carrier and row.tracking_number
        else None
    )
    return ReturnOut.model_validate(
        {
            "id": row.id,
            "order_id": row.order_id,
            "status": row.status,
            "reason": row.reason,
            "lines": [
                {
                    "order_item_id": line.order_item_id,
                    "sku": item.sku,
                    "quantity": line.quantity,
                    "received_quantity": line.received_quantity,
                    "restocked_quantity": line.restocked_quantity,
                    "refund_amount": line.refund_amount,
                }
                for line, item in found.lines
            ],
            "refund_amount": row.refund_amount,
            "shipping_refund_amount": row.shipping_refund_amount,
            "currency": row.currency,
            "label": label,
            "note": row.note,
            "transitions": [TransitionOut.model_validate(t) for t in found.transitions],
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        },
        context={"currency": row.currency},
    )


def _workflow_input(found: returns.ReturnView, settings: ReturnSettings) -> ReturnInput:
    row = found.order_return
    return ReturnInput(
        return_id=row.id,
        order_id=row.order_id,
        refund=MoneyValue.of(Money.of(row.refund_amount, row.currency)),
        lines=[
            ReturnLineValue(
                order_item_id=line.order_item_id,
                variant_id=item.variant_id,
                sku=item.sku,
                quantity=line.quantity,
                refund=MoneyValue.of(Money.of(line.refund_amount, row.currency)),
            )
            for line, item in found.lines
        ],
        auto_approve=settings.auto_approve,
        ship_back_days=settings.ship_back_days,
    )


async def request(
    wired: Platform,
    order_id: uuid.UUID,
    body: ReturnIn,
    caller: Principal,
    idempotency_key: str | None,
) -> ReturnOut:
    """Record the buyer's return (or find the one this key recorded) and start its workflow;
    a replay answers the same return as it now stands."""
    asked: dict[uuid.UUID, int] = {}
    for line in body.lines:
        if line.order_item_id in asked:
            raise ReturnLineUnknown(
                "each order line may be named once", order_item_id=str(line.order_item_id)
            )
        asked[line.order_item_id] = line.quantity
    ask = returns.ReturnRequest(
        order_id=order_id,
        user_id=caller.user_id,
        idempotency_key=required_key(idempotency_key),
        lines=asked,
        reason=body.reason,
    )
    settings = wired.settings.returns
    async with wired.databases["orders"].begin() as session:
        found, created = await returns.request_return(
            session, ask, timedelta(days=settings.window_days)
        )
        start = _workflow_input(found, settings)
        waiting = found.order_return.status == ReturnStatus.REQUESTED
    if waiting:
        # Started on every answer while it is requested (once: a replay finds the run), so a
        # request whose start was lost to a Temporal outage is completed by its retry under the
        # same key; past `requested` it had its run (never started again, even after retention).
        await _temporal(start.return_id, ReturnClient(wired.temporal).start(start))
    if created:
        log.info("returns.requested", return_id=str(start.return_id), order_id=str(order_id))
    async with wired.databases["orders"].begin() as session:
        return return_out(await returns.get_return(session, start.return_id, caller.user_id))


async def get(wired: Platform, return_id: uuid.UUID, caller: Principal) -> ReturnOut:
    """One return (404 unless the caller's own, or an operator)."""
    async with wired.databases["orders"].begin() as session:
        return return_out(await returns.get_return(session, return_id, caller.owner_filter()))


async def of_order(wired: Platform, order_id: uuid.UUID, caller: Principal) -> list[ReturnOut]:
    """An order's returns, oldest first (404 for an order the caller may not see)."""
    async with wired.databases["orders"].begin() as session:
        found = await returns.returns_of_order(session, order_id, caller.owner_filter())
        return [return_out(view) for view in found]


async def waiting(wired: Platform, status: ReturnStatus | None, limit: int) -> list[ReturnOut]:
    """Returns for operators, oldest first, optionally at one status."""
    async with wired.databases["orders"].begin() as session:
        return [return_out(view) for view in await returns.list_returns(session, status, limit)]


async def decide(
    wired: Platform,
    return_id: uuid.UUID,
    action: str,
    *,
    note: str | None = None,
    receipt: ReceiveIn | None = None,
    idempotency_key: str | None = None,
) -> ReturnOut:
    """An operator's approve, reject (with a note) or receive; 409 `return_not_awaiting` when
    the return is not at that step."""
    client = ReturnClient(wired.temporal)
    request_id = update_id(f"return-{action}", return_id, idempotency_key)
    async with wired.databases["orders"].begin() as session:
        found = await returns.get_return(session, return_id, None)  # 404 for an unknown return
        start = _workflow_input(found, wired.settings.returns)
    if found.order_return.status == ReturnStatus.REQUESTED:
        # A requested return whose workflow never started (its request's start was lost and
        # never retried) gets it now; for any other this changes nothing. Past `requested` a
        # return always had its run (one ended long ago must not start again).
        await _temporal(return_id, client.start(start))
    try:
        if action == "approve":
            await _temporal(return_id, client.approve(return_id, request_id))
        elif action == "reject":
            await _temporal(return_id, client.reject(return_id, note, request_id))
        else:
            assert receipt is not None
            counted = Receipt(
                lines=[
                    ReceivedLine(
                        order_item_id=line.order_item_id,
                        quantity=line.quantity,
                        restock=line.restock,
                    )
                    for line in receipt.lines
                ]
            )
            await _temporal(return_id, client.receive(return_id, counted, request_id))
    except (WorkflowUpdateFailedError, RPCError) as exc:
        if isinstance(exc, RPCError) and exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise ReturnNotAwaiting(
            f"the return is not waiting to be {action}d", return_id=str(return_id)
        ) from exc
    return await get_for_operator(wired, return_id)


async def get_for_operator(wired: Platform, return_id: uuid.UUID) -> ReturnOut:
    """A return as an operator sees it."""
    async with wired.databases["orders"].begin() as session:
        return return_out(await returns.get_return(session, return_id, None))


async def attend(
    wired: Platform, return_id: uuid.UUID, note: str | None, idempotency_key: str | None
) -> ReturnOut:
    """An operator's answer to a return waiting at needs_attention: run its failed step again
    (`note` None) or record that it was settled by hand; 409 `not_waiting_for_operator`."""
    request_id = update_id("return-attend", return_id, idempotency_key) if idempotency_key else None
    await attend_workflow(
        ReturnClient(wired.temporal),
        return_id,
        note,
        request_id,
        answered_by=_temporal,
        not_waiting="the return is not waiting for an operator",
    )
    return await get_for_operator(wired, return_id)
