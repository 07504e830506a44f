"""The benchmark's ceiling: a workflow shaped like a checkout whose activities do nothing.

Same task queues, same grouping (sequential steps, concurrent stages), the same number of local
activities and search-attribute upserts as CheckoutWorkflow's happy path, on the same server and
workers; what it cannot go faster than is the orchestration itself.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

STEP = SearchAttributeKey.for_keyword("CheckoutStep")
STATUS = SearchAttributeKey.for_keyword("CheckoutStatus")

# CheckoutWorkflow's happy path without a coupon reservation: each inner list runs concurrently.
STAGES: list[list[str]] = [
    ["cart"],  # lock_cart
    ["products", "inventory"],  # price_cart | reserve_inventory
    ["orders"],  # create_order
    ["payments"],  # authorize_payment
    ["payments"],  # capture_payment
    ["inventory", "coupons", "orders"],  # commit_inventory | confirm_coupon | mark_paid
    ["shipping"],  # create_shipment
    ["cart", "orders"],  # mark_converted | mark_fulfilling
]
REMOTE_ACTIVITIES = sum(len(stage) for stage in STAGES)


@activity.defn(name="bench.noop")
async def noop(value: str) -> str:
    """Does nothing, on whichever queue it is registered."""
    return value


@activity.defn(name="bench.local_noop")
async def local_noop(value: str) -> str:
    """Does nothing, as a local activity of the checkout worker."""
    return value


@workflow.defn(name="BenchCeilingWorkflow")
class CeilingWorkflow:
    """A checkout's orchestration without its work."""

    @workflow.run
    async def run(self, customer: str) -> str:
        """Walk the stages."""
        timeout = timedelta(seconds=10)
        workflow.upsert_search_attributes([STATUS.value_set("processing")])
        await workflow.execute_local_activity(local_noop, customer, start_to_close_timeout=timeout)
        for index, stage in enumerate(STAGES):
            workflow.upsert_search_attributes([STEP.value_set(f"stage-{index}")])
            await workflow.execute_local_activity(
                local_noop, customer, start_to_close_timeout=timeout
            )
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        noop, customer, task_queue=queue, start_to_close_timeout=timeout
                    )
                    for queue in stage
                )
            )
        workflow.upsert_search_attributes([STATUS.value_set("completed")])
        await workflow.execute_local_activity(local_noop, customer, start_to_close_timeout=timeout)
        return customer
