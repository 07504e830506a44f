"""ReconcilePaymentWorkflow: a provider event for a checkout that has already ended.

The checkout's own compensation settled the payment it knew about; an authorization or capture
reported afterwards (a late webhook, an intent created twice by a misbehaving client) is
cancelled or refunded here, with retries, so nobody keeps paying for an order that does not exist.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.payments.contract import SETTLE_ENDED, SettleInput, VoidResult
    from workflows.aftersale import on_payments_queue

# The provider is asked again for as long as it fails.
SETTLE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name="ReconcilePaymentWorkflow")
class ReconcilePaymentWorkflow:
    """Id `reconcile-<intent_id>`, on task queue `checkout`."""

    @workflow.run
    async def run(self, input: SettleInput) -> VoidResult:
        """Settle the intent through the payments queue."""
        return await on_payments_queue(SETTLE_ENDED, input, SETTLE_RETRY)
