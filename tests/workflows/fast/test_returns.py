"""ReturnWorkflow on the time-skipping server against stand-ins: approved by policy or decided by
an operator, received by the carrier or an operator's count, restocked once, refunded under the
return's key, and waiting for an operator when the refund fails (a retry asks under a new key)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.shared import MoneyValue
from domains.orders.statuses import ReturnStatus
from tests.workflows.fast.standins import CURRENCY, Standins
from tests.workflows.fast.world import World
from workflows.checkout.contract import TaskQueue
from workflows.returns.client import ReturnClient
from workflows.returns.models import (
    Receipt,
    ReceivedLine,
    ReturnBody,
    ReturnInput,
    ReturnLineValue,
    workflow_id,
)
from workflows.returns.workflow import SETTLED_BY_HAND, ReturnWorkflow

pytestmark = pytest.mark.timeout(60)
SHIRT, SOCKS = uuid.uuid4(), uuid.uuid4()


def _money(amount: str) -> MoneyValue:
    return MoneyValue(amount=Decimal(amount), currency=CURRENCY)


async def _start(
    env: WorkflowEnvironment, standins: Standins, *, auto_approve: bool = False
) -> tuple[World, WorkflowHandle[ReturnWorkflow, ReturnBody]]:
    return_id = uuid.uuid4()
    world = standins.return_world(return_id)
    start = ReturnInput(
        return_id=return_id,
        order_id=uuid.uuid4(),
        refund=_money("35.72"),
        lines=[
            ReturnLineValue(
                order_item_id=SHIRT,
                variant_id=uuid.uuid4(),
                sku="SHIRT",
                quantity=1,
                refund=_money("26.86"),
            ),
            ReturnLineValue(
                order_item_id=SOCKS,
                variant_id=uuid.uuid4(),
                sku="SOCKS",
                quantity=1,
                refund=_money("8.86"),
            ),
        ],
        auto_approve=auto_approve,
    )
    handle = await env.client.start_workflow(
        ReturnWorkflow.run, start, id=workflow_id(return_id), task_queue=TaskQueue.CHECKOUT.value
    )
    return world, handle


async def test_approved_by_policy_and_received_by_the_carrier(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins, auto_approve=True)
    await handle.signal("carrier_delivered")
    await handle.signal("carrier_delivered")  # a redelivered tracking event changes nothing
    body = await handle.result()
    assert (body.status, body.refund_status) == (ReturnStatus.REFUNDED, "succeeded")
    assert world.return_moves == ["approved", "received", "refunded"]
    assert world.restocked == {SHIRT: 1, SOCKS: 1}
    assert world.refund_requests == {f"return-{body.return_id}": Decimal("35.72")}


async def test_an_operator_decides_and_counts_and_a_failed_refund_is_retried(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins)
    world.refund_outcomes = ["pending", "failed"]
    returns = ReturnClient(skipping.client)
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    with pytest.raises(WorkflowUpdateFailedError):  # nothing to receive before the approval
        await returns.receive(return_id, Receipt())
    approved = await returns.approve(return_id)
    assert approved.status == ReturnStatus.APPROVED
    with pytest.raises(WorkflowUpdateFailedError):  # decided once
        await returns.reject(return_id, "too late")
    counted = Receipt(
        lines=[
            ReceivedLine(order_item_id=SHIRT, quantity=1, restock=True),
            ReceivedLine(order_item_id=SOCKS, quantity=1, restock=False),
        ]
    )
    received = await returns.receive(return_id, counted)
    assert received.status in (ReturnStatus.RECEIVED, ReturnStatus.NEEDS_ATTENTION)
    await skipping.sleep(60)  # the pending refund is re-read, and has failed
    waiting = await handle.query(ReturnWorkflow.status)
    assert waiting.status == ReturnStatus.NEEDS_ATTENTION
    assert waiting.failed[0].name == "refund"
    assert "failed" in waiting.failed[0].error
    await returns.retry(return_id)
    body = await handle.result()
    assert body.status == ReturnStatus.REFUNDED
    assert world.restocked == {SHIRT: 1}  # the socks came back unsellable
    assert list(world.refund_requests) == [f"return-{return_id}", f"return-{return_id}:retry-1"]
    # Each asked as the return's own: only the return retries it.
    assert set(world.refund_requesters.values()) == {("return", return_id)}
    assert world.return_moves == [
        "approved",
        "received",
        "needs_attention",
        "received",
        "refunded",
    ]


async def test_a_rejected_return_refunds_and_restocks_nothing(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins)
    returns = ReturnClient(skipping.client)
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    rejected = await returns.reject(return_id, "worn")
    assert (rejected.status, rejected.note) == (ReturnStatus.REJECTED, "worn")
    body = await handle.result()
    assert body.status == ReturnStatus.REJECTED
    # A carrier's late word about an ended return reaches nothing, and is no error.
    assert await returns.carrier_delivered(return_id) is False
    assert world.return_moves == ["rejected"]
    assert (world.restocked, world.refund_requests) == ({}, {})


async def test_a_refund_settled_by_hand_ends_the_return_refunded(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins, auto_approve=True)
    world.refund_outcomes = ["rejected"]
    returns = ReturnClient(skipping.client)
    await handle.signal("carrier_delivered")
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    while (await handle.query(ReturnWorkflow.status)).status != ReturnStatus.NEEDS_ATTENTION:
        await skipping.sleep(1)
    await returns.resolve(return_id, "paid back by bank transfer")
    body = await handle.result()
    assert (body.status, body.refund_status) == (ReturnStatus.REFUNDED, SETTLED_BY_HAND)
    assert body.note == "paid back by bank transfer"
    assert world.return_moves[-2:] == ["needs_attention", "refunded"]
