"""The one way to start, signal, update, query and describe checkouts.

Used by the API, the ops views, the workers' sweeper, the tests and the benchmark, so that the
workflow id, the task queue, the reuse policies and the initial search attributes are decided in
one place.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.payments.contract import SettleInput
from workflows.checkout.contract import (
    CHECKOUT_STATUS,
    CUSTOMER_ID,
    CheckoutStatus,
    TaskQueue,
    reconcile_workflow_id,
    workflow_id,
)
from workflows.checkout.models import CheckoutInput, CheckoutStatusBody, PaymentEvent
from workflows.checkout.workflow import CheckoutWorkflow
from workflows.reconcile import ReconcilePaymentWorkflow

CheckoutHandle = WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]


class CheckoutNotRunning(Exception):
    """The checkout has no workflow run that could take the request (ended, or never started)."""


def _not_found(error: RPCError) -> bool:
    return error.status == RPCStatusCode.NOT_FOUND


class CheckoutClient:
    """Checkouts as Temporal workflows, addressed by checkout id."""

    def __init__(self, client: Client) -> None:
        self.temporal = client

    def handle(self, checkout_id: uuid.UUID) -> CheckoutHandle:
        """The handle of a checkout's workflow (whatever run is the latest)."""
        return self.temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(checkout_id))

    async def start(self, checkout: CheckoutInput) -> CheckoutHandle:
        """Start the checkout; starting it again returns the running one, never a second."""
        return await self.temporal.start_workflow(
            CheckoutWorkflow.run,
            checkout,
            id=workflow_id(checkout.checkout_id),
            task_queue=TaskQueue.CHECKOUT.value,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A checkout that ended is never run again under its id.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(CUSTOMER_ID, str(checkout.user_id)),
                    SearchAttributePair(CHECKOUT_STATUS, CheckoutStatus.PROCESSING.value),
                ]
            ),
        )

    async def status(self, checkout_id: uuid.UUID) -> CheckoutStatusBody:
        """The checkout's status body from its workflow (CheckoutNotRunning without one)."""
        try:
            return await self.handle(checkout_id).query(CheckoutWorkflow.status)
        except RPCError as exc:
            if _not_found(exc):
                raise CheckoutNotRunning(str(checkout_id)) from exc
            raise

    async def request_cancel(self, checkout_id: uuid.UUID) -> bool:
        """Ask the workflow to cancel; True when it will be honoured (decided in the workflow)."""
        try:
            return await self.handle(checkout_id).execute_update(CheckoutWorkflow.request_cancel)
        except RPCError as exc:
            if _not_found(exc):
                raise CheckoutNotRunning(str(checkout_id)) from exc
            raise

    async def force_cancel(self, checkout_id: uuid.UUID) -> bool:
        """An operator's cancel: a cancel signal before the capture, Temporal cancellation after
        it (the workflow then refunds). Returns whether the payment had been captured."""
        handle = self.handle(checkout_id)
        captured = await handle.query(CheckoutWorkflow.captured)
        if captured:
            await handle.cancel()
        else:
            await handle.signal(CheckoutWorkflow.cancel)
        return captured

    async def deliver_payment_event(self, checkout_id: uuid.UUID, event: PaymentEvent) -> None:
        """Signal a provider event to the checkout (CheckoutNotRunning once it has ended)."""
        try:
            await self.handle(checkout_id).signal(CheckoutWorkflow.payment_event, event)
        except RPCError as exc:
            if _not_found(exc):
                raise CheckoutNotRunning(str(checkout_id)) from exc
            raise

    async def compensations(self, checkout_id: uuid.UUID) -> list[str]:
        """The compensations the checkout has run, in order."""
        return await self.handle(checkout_id).query(CheckoutWorkflow.compensations)

    async def describe(self, checkout_id: uuid.UUID) -> WorkflowExecutionDescription | None:
        """Temporal's description of the checkout's workflow (None when there is none)."""
        try:
            return await self.handle(checkout_id).describe()
        except RPCError as exc:
            if _not_found(exc):
                return None
            raise

    async def is_running(self, checkout_id: uuid.UUID) -> bool:
        """Whether the checkout's workflow is running now."""
        description = await self.describe(checkout_id)
        return description is not None and description.status == WorkflowExecutionStatus.RUNNING

    def list(self, query: str, limit: int) -> AsyncIterator[WorkflowExecution]:
        """Checkout workflows matching a visibility query."""
        return self.temporal.list_workflows(query, limit=limit)

    async def settle_after_end(self, settle: SettleInput) -> None:
        """Start (once per intent) the workflow that releases what an ended checkout's intent
        still holds."""
        try:
            await self.temporal.start_workflow(
                ReconcilePaymentWorkflow.run,
                settle,
                id=reconcile_workflow_id(settle.intent_id),
                task_queue=TaskQueue.CHECKOUT.value,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass
