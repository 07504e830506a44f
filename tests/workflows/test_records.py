"""What a checkout records of itself: its status body and steps are written
when somebody can see them change, not at every stage, and what is written is exact.

`GET /v1/checkouts/{id}` reads this record, so these tests read it the same way.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select
from temporalio.api.sdk.v1 import WorkflowMetadata

from domains.checkout.models import CheckoutSession, CheckoutStep
from tests.platform import Platform
from workflows.checkout.models import CheckoutStatusBody
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(120)

HAPPY_STEPS = [
    "lock_cart",
    "price_cart",
    "reserve_inventory",
    "create_order",
    "authorize_payment",
    "capture_payment",
    "commit_inventory",
    "confirm_order",
    "create_shipment",
    "complete",
]


async def _recorded(platform: Platform, checkout_id: uuid.UUID) -> CheckoutStatusBody | None:
    async with platform.databases["checkout"].begin() as session:
        row = await session.get(CheckoutSession, checkout_id)
        return CheckoutStatusBody.of_record(row) if row else None


async def _steps(platform: Platform, checkout_id: uuid.UUID) -> list[tuple[str, str]]:
    async with platform.databases["checkout"].begin() as session:
        rows = await session.scalars(
            select(CheckoutStep)
            .where(CheckoutStep.session_id == checkout_id)
            .order_by(CheckoutStep.started_at, CheckoutStep.step_name)
        )
        return [(row.step_name, row.status) for row in rows]


async def test_a_happy_checkout_is_recorded_once_it_ends(platform: Platform) -> None:
    checkout, handle = await platform.checkout()

    body = await handle.result()

    assert body.status == "completed"
    # The record is the workflow's answer, exactly (the API serves it).
    assert await _recorded(platform, checkout.checkout_id) == body
    # Every step, in the order it started, though written at the end.
    assert await _steps(platform, checkout.checkout_id) == [
        (step, "completed") for step in HAPPY_STEPS
    ]
    events = (await handle.fetch_history()).events
    local = [
        e for e in events if e.marker_recorded_event_attributes.marker_name.endswith("_activity")
    ]
    assert len(local) == 2, "the session opened, then one record at the end"
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "coupons.confirm" not in scheduled, "no coupon, nothing to confirm"
    assert await platform.invariants(checkout.checkout_id) == []


async def test_a_slow_step_is_shown_while_it_runs(platform: Platform) -> None:
    # tok_flaky: the provider fails the first authorization, then hangs past the client's
    # timeout: authorize_payment lasts seconds.
    checkout, handle = await platform.checkout(token="tok_flaky")

    seen: set[str] = set()
    for _ in range(600):
        recorded = await _recorded(platform, checkout.checkout_id)
        if recorded is not None:
            seen.add(recorded.step)
            if recorded.status != "processing" or "authorize_payment" in seen:
                break
        await asyncio.sleep(0.05)
    body = await handle.result()

    assert "authorize_payment" in seen, seen
    assert body.status == "completed"
    assert await _recorded(platform, checkout.checkout_id) == body
    assert await platform.invariants(checkout.checkout_id) == []


async def test_a_run_explains_itself_in_the_web_ui(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds")
    await platform.wait_status(handle, "requires_action")

    description = await handle.describe()
    summary = await description.static_summary()
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details

    assert summary == f"Checkout by buyer {checkout.user_id}"
    assert "`awaiting_payment`" in details, details
    assert "waiting for the payment's confirmation" in details, details
    body = await handle.query(CheckoutWorkflow.status)
    assert body.order is not None
    assert body.order.order_number in details
    # No personal data: the buyer's name and address stay out of what the UI shows.
    assert checkout.shipping_address.name not in details + (summary or "")
    history = await handle.fetch_history()
    scheduled = [
        e.user_metadata.summary
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert all(item.data for item in scheduled), "every activity carries a summary"
    await handle.signal(CheckoutWorkflow.cancel)
    assert (await handle.result()).status == "cancelled"
