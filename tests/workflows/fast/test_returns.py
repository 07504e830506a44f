"""ReturnWorkflow on the time-skipping server against stand-ins: approved by policy or decided by
an operator, received by the carrier or an operator's count, restocked once, refunded under the
return's key, and waiting for an operator when the refund fails (a retry asks under a new key)."""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

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
from workflows.returns.workflow import SETTLED_BY_HAND, SHIP_BACK_PATCH, ReturnWorkflow

pytestmark = pytest.mark.timeout(60)
SHIRT, SOCKS = uuid.uuid4(), uuid.uuid4()
HISTORIES = Path(__file__).parents[1] / "histories"


async def _replays(
    handle: WorkflowHandle[ReturnWorkflow, ReturnBody], scenario: str, converter: DataConverter
) -> None:
    """The run's history replays on today's code. `RECORD_HISTORIES=1` keeps it as
    `tests/workflows/histories/return_<scenario>.<SHIP_BACK_PATCH>.json` (never overwriting),
    which tests/workflows/test_replay.py replays from then on."""
    history = await handle.fetch_history()
    path = HISTORIES / f"return_{scenario}.{SHIP_BACK_PATCH}.json"
    if os.environ.get("RECORD_HISTORIES") == "1" and not path.exists():
        path.write_text(history.to_json())
    await Replayer(workflows=[ReturnWorkflow], data_converter=converter).replay_workflow(history)


def _money(amount: str) -> MoneyValue:
    return MoneyValue(amount=Decimal(amount), currency=CURRENCY)


async def _start(
    env: WorkflowEnvironment,
    standins: Standins,
    *,
    auto_approve: bool = False,
    ship_back_days: int | None = None,
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
        ship_back_days=ship_back_days,
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


async def _overdue(
    skipping: WorkflowEnvironment, handle: WorkflowHandle[ReturnWorkflow, ReturnBody]
) -> ReturnBody:
    """Let the parcel's days pass (the server skips time while nothing else runs)."""
    while True:
        body = await handle.query(ReturnWorkflow.status)
        if body.status == ReturnStatus.NEEDS_ATTENTION:
            return body
        await skipping.sleep(3600)


async def test_a_parcel_that_never_comes_back_waits_for_an_operator_who_closes_it(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins, auto_approve=True, ship_back_days=14)
    returns = ReturnClient(skipping.client)
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    with pytest.raises(WorkflowUpdateFailedError):  # not overdue yet: an approved return stays
        await returns.reject(return_id, "changed my mind")
    overdue = await _overdue(skipping, handle)
    assert [(step.name, step.error) for step in overdue.failed] == [
        ("receive", "the parcel has not come back within 14 days")
    ]
    await returns.retry(return_id)  # the buyer says it is on its way: wait another 14 days
    while (await handle.query(ReturnWorkflow.status)).status != ReturnStatus.APPROVED:
        await skipping.sleep(1)
    await _overdue(skipping, handle)
    closed = await returns.reject(return_id, "never sent back")
    assert (closed.status, closed.note) == (ReturnStatus.REJECTED, "never sent back")
    body = await handle.result()
    assert body.status == ReturnStatus.REJECTED
    assert world.return_moves == [
        "approved",
        "needs_attention",
        "approved",
        "needs_attention",
        "rejected",
    ]
    assert (world.restocked, world.refund_requests) == ({}, {})
    assert await returns.carrier_delivered(return_id) is False
    await _replays(handle, "overdue_closed", skipping.client.data_converter)


async def test_an_overdue_parcel_that_arrives_after_all_is_received_and_refunded(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins, auto_approve=True, ship_back_days=7)
    returns = ReturnClient(skipping.client)
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    await _overdue(skipping, handle)
    received = await returns.receive(
        return_id, Receipt(lines=[ReceivedLine(order_item_id=SHIRT, quantity=1, restock=True)])
    )
    assert received.status in (ReturnStatus.RECEIVED, ReturnStatus.REFUNDED)
    body = await handle.result()
    assert (body.status, body.failed) == (ReturnStatus.REFUNDED, [])
    assert world.return_moves[-4:] == ["needs_attention", "approved", "received", "refunded"]
    assert world.restocked == {SHIRT: 1}
    await _replays(handle, "overdue_received", skipping.client.data_converter)


async def test_an_operator_resolving_an_overdue_parcel_closes_the_return(
    skipping: WorkflowEnvironment, standins: Standins
) -> None:
    world, handle = await _start(skipping, standins, auto_approve=True, ship_back_days=3)
    returns = ReturnClient(skipping.client)
    return_id = (await handle.query(ReturnWorkflow.status)).return_id
    await _overdue(skipping, handle)
    await returns.resolve(return_id, "the buyer keeps the goods")
    body = await handle.result()
    assert (body.status, body.note) == (ReturnStatus.REJECTED, "the buyer keeps the goods")
    assert (world.restocked, world.refund_requests) == ({}, {})
