"""Deploying new workflow code while checkouts wait (docs/deployment.md, "Deploying workflow
changes"): a new release takes over the workflow queue while checkouts started by the previous
one wait for 3-D Secure; both kinds finish correctly, and only new checkouts take the new path.

The two releases run on a queue of their own (the session's platform keeps serving `checkout`
and every activity queue), one after the other as a rolling deploy would: the old worker drains
and stops, then the new one polls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

from activities.checkout.activities import CheckoutActivities
from activities.errors import PermanentFailures
from tests.platform import Platform
from tests.workflows.next_version import PATCH, RELEASE, NextCheckoutWorkflow
from tools.seed import new_input
from workflows.checkout.contract import workflow_id
from workflows.checkout.models import CheckoutStatusBody
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(180)
QUEUE = "checkout-release-test"


@asynccontextmanager
async def _release(platform: Platform, workflow: type) -> AsyncIterator[None]:
    """One release's workflow worker (with the checkout's local activities, as in production)."""
    local = CheckoutActivities(platform.databases["checkout"])
    worker = Worker(
        platform.client,
        task_queue=QUEUE,
        workflows=[workflow],
        activities=[local.open_session, local.record_progress],
        interceptors=[PermanentFailures()],
    )
    async with worker:
        yield


async def _start(platform: Platform) -> WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]:
    variant = await platform.seed.variant(price="12.00", stock=10)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="pm_card_threeDSecure2Required")
    return await platform.client.start_workflow(
        CheckoutWorkflow.run, checkout, id=workflow_id(checkout.checkout_id), task_queue=QUEUE
    )


async def _approve(
    platform: Platform, handle: WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]
) -> None:
    waiting = await platform.wait_status(handle, "requires_action", within_s=60)
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    async with httpx.AsyncClient() as http:
        approved = await http.get(waiting.payment.next_action.url)
    assert approved.status_code == 200


async def _release_of(handle: WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]) -> object:
    memo = await (await handle.describe()).memo()
    return memo.get("release")


async def test_a_new_release_takes_over_while_older_checkouts_wait_for_3ds(
    platform: Platform,
) -> None:
    async with _release(platform, CheckoutWorkflow):
        older = [await _start(platform) for _ in range(2)]
        for handle in older:
            await platform.wait_status(handle, "requires_action", within_s=60)
    # The previous release has stopped; its checkouts wait at the provider, held by nobody.

    async with _release(platform, NextCheckoutWorkflow):
        newer = await _start(platform)
        for handle in [*older, newer]:
            await _approve(platform, handle)
        bodies = [await handle.result() for handle in [*older, newer]]

    assert [body.status for body in bodies] == ["completed"] * 3
    # Only the checkout started by the new release took its patched path.
    assert [await _release_of(handle) for handle in older] == [None, None]
    assert await _release_of(newer) == RELEASE
    markers = [
        event.marker_recorded_event_attributes.details["patch_id"]
        for event in (await newer.fetch_history()).events
        if event.HasField("marker_recorded_event_attributes")
    ]
    assert markers, f"the new checkout recorded no patch marker for {PATCH}"
    ids = [body.checkout_id for body in bodies]
    assert await platform.invariants(*ids) == []
