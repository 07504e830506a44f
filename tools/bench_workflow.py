"""The benchmark's floor: a workflow shaped like a checkout whose activities do nothing.

The checkout's happy path as the contract needs it, and nothing else: the same sequential stages
and concurrent fan-out of no-op activities on the same task queues, on the same server and
workers. No local activities and no search-attribute upserts: those are the implementation's own
records, not something the contract asks of the orchestration, so the floor does not count them.
What the floor takes is what no checkout of this shape can go below.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

# CheckoutWorkflow's happy path without a coupon, each inner list one concurrent stage. Without
# a coupon the checkout confirms none (`no-coupon-confirm`), so the settle stage has two steps.
STAGES: list[list[str]] = [
    ["cart"],  # lock_cart
    ["products", "inventory"],  # price_cart | reserve_inventory
    ["orders"],  # create_order
    ["payments"],  # authorize_payment
    ["payments"],  # capture_payment
    ["inventory", "orders"],  # commit_inventory | mark_paid
    ["shipping"],  # create_shipment
    ["cart", "orders"],  # mark_converted | mark_fulfilling
]
# The shape of checkouts started before `lean-records`: they confirmed a coupon in any case.
LEGACY_STAGES: list[list[str]] = [
    *STAGES[:5],
    ["inventory", "coupons", "orders"],
    *STAGES[6:],
]
REMOTE_ACTIVITIES = sum(len(stage) for stage in STAGES)


@activity.defn(name="bench.noop")
async def noop(value: str) -> str:
    """Does nothing, on whichever queue it is registered."""
    return value


@workflow.defn(name="BenchCeilingWorkflow")
class CeilingWorkflow:
    """A checkout's orchestration without its work."""

    @workflow.run
    async def run(self, stages: list[list[str]]) -> int:
        """Walk the stages; the number of activities run."""
        timeout = timedelta(seconds=10)
        ran = 0
        for stage in stages:
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        noop, "", task_queue=queue, start_to_close_timeout=timeout
                    )
                    for queue in stage
                )
            )
            ran += len(stage)
        return ran
