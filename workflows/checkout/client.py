"""The one way to start, signal, update, query and describe checkouts.

Used by the API, the ops views, the workers' sweeper, the tests and the benchmark, so that the
workflow id, the task queue, the reuse policies and the initial search attributes are decided in
one place.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.payments.contract import SettleInput
from workflows.checkout.contract import (
    CHECKOUT_STATUS,
    CHECKOUT_STEP,
    CUSTOMER_ID,
    CheckoutStatus,
    StepName,
    TaskQueue,
    reconcile_workflow_id,
    workflow_id,
)
from workflows.checkout.models import (
    Attention,
    CheckoutInput,
    CheckoutStatusBody,
    NewPaymentMethod,
    OperatorCancelResult,
    PaymentEvent,
    Resolution,
)
from workflows.checkout.workflow import CheckoutWorkflow
from workflows.reconcile import ReconcilePaymentWorkflow

CheckoutHandle = WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]
T = TypeVar("T")


class CheckoutNotRunning(Exception):
    """The checkout has no workflow run that could take the request (ended, or never started)."""


class UpdateRefused(Exception):
    """The workflow refused a request (its validator): `code` says why (a FailureCode value)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(error: RPCError) -> bool:
    return error.status == RPCStatusCode.NOT_FOUND


async def _answer(checkout_id: uuid.UUID, call: Awaitable[T]) -> T:
    """An update's answer; a refusal as UpdateRefused, no run as CheckoutNotRunning."""
    try:
        return await call
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise UpdateRefused(cause.type, cause.message) from exc
        raise
    except RPCError as exc:
        if _not_found(exc):
            raise CheckoutNotRunning(str(checkout_id)) from exc
        raise


async def _outcome(
    accepted: Awaitable[WorkflowUpdateHandle[CheckoutStatusBody]],
) -> CheckoutStatusBody | None:
    """A `wait_settled` update's answer (the caller bounds the wait); None when the workflow
    refused it (a refusal can surface with the handle or with its result). A wait given up on
    leaves the update to complete later, unread."""
    try:
        return await (await accepted).result()
    except (UpdateRefused, WorkflowUpdateFailedError):
        return None


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
            CheckoutWorkflow.run, checkout, **self._start_options(checkout)
        )

    async def start_and_wait(
        self, checkout: CheckoutInput, wait: timedelta
    ) -> CheckoutStatusBody | None:
        """Start the checkout (or join the running one, never a second) and wait, in the same
        round trip, up to `wait` for its status to leave `processing`: the recorded status body
        then, None when it has not (or nothing could be waited for).

        WorkflowAlreadyStartedError when the checkout ran and ended (its id is never reused)."""
        operation = WithStartWorkflowOperation(
            CheckoutWorkflow.run, checkout, **self._start_options(checkout)
        )
        accepted = self.temporal.start_update_with_start_workflow(
            # By name: the SDK's typing does not follow an async update's result.
            "wait_settled",
            start_workflow_operation=operation,
            result_type=CheckoutStatusBody,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        try:
            return await asyncio.wait_for(_outcome(accepted), wait.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # Not answered in time, perhaps not even accepted (the checkout's worker is slow or
            # away): make sure the run exists before answering `processing`.
            await self.start(checkout)
            return None

    async def wait_settled(
        self, checkout_id: uuid.UUID, wait: timedelta
    ) -> CheckoutStatusBody | None:
        """Wait up to `wait` for a running checkout's status to leave `processing`: the
        recorded status body, or None when it has not, or the workflow refused the wait (the
        status is recorded already, an operator must act first, enough clients wait).
        CheckoutNotRunning without a running workflow."""
        accepted = _answer(
            checkout_id,
            self.handle(checkout_id).start_update(
                "wait_settled",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=CheckoutStatusBody,
            ),
        )
        try:
            return await asyncio.wait_for(_outcome(accepted), wait.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # The SDK reports its poll cancelled by the time limit as the latter.
            return None

    def _start_options(self, checkout: CheckoutInput) -> dict[str, Any]:
        """How a checkout's workflow is started, whichever way."""
        return dict(
            id=workflow_id(checkout.checkout_id),
            task_queue=TaskQueue.CHECKOUT.value,
            # What the web UI shows of the run before it has done anything (no personal data:
            # the buyer's id, never their name); its current details follow its progress.
            static_summary=f"Checkout by buyer {checkout.user_id}",
            static_details=(
                f"cart {checkout.cart_id}"
                + (" with a coupon" if checkout.coupon_code else "")
                + f", payment window {checkout.payment_timeout_s} s"
            ),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A checkout that ended is never run again under its id.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(CUSTOMER_ID, str(checkout.user_id)),
                    SearchAttributePair(CHECKOUT_STATUS, CheckoutStatus.PROCESSING.value),
                    # The first step: the run need not upsert what it starts with.
                    SearchAttributePair(CHECKOUT_STEP, StepName.LOCK_CART.value),
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

    async def request_cancel(self, checkout_id: uuid.UUID, update_id: str | None = None) -> bool:
        """The buyer's cancel; UpdateRefused (`already_captured`, `checkout_ended`) when the
        workflow will not honour it: decided atomically in the workflow.

        `update_id` names the request: the same id again (a retry after a timeout) answers the
        first call's result instead of being decided a second time."""
        return await _answer(
            checkout_id,
            self.handle(checkout_id).execute_update(CheckoutWorkflow.request_cancel, id=update_id),
        )

    async def retry_payment(
        self, checkout_id: uuid.UUID, payment_method: str, update_id: str | None = None
    ) -> None:
        """The buyer's next payment method after a decline; UpdateRefused
        (`checkout_not_awaiting_payment_method`, `checkout_ended`) unless the checkout waits at
        `requires_payment_method` (see `request_cancel` for `update_id`)."""
        await _answer(
            checkout_id,
            self.handle(checkout_id).execute_update(
                CheckoutWorkflow.retry_payment,
                NewPaymentMethod(payment_method=payment_method),
                id=update_id,
            ),
        )

    async def force_cancel(
        self, checkout_id: uuid.UUID, update_id: str | None = None
    ) -> OperatorCancelResult:
        """An operator's cancel, honoured at any step; answered once the payment's compensation
        has run, with what became of the money (see `request_cancel` for `update_id`)."""
        return await _answer(
            checkout_id,
            self.handle(checkout_id).execute_update(
                # By name: the SDK's typing does not follow an async update's result.
                "operator_cancel",
                id=update_id,
                result_type=OperatorCancelResult,
            ),
        )

    async def retry_compensation(
        self, checkout_id: uuid.UUID, update_id: str | None = None
    ) -> None:
        """Run a checkout's failed compensations again (it waits at needs_attention)."""
        await _answer(
            checkout_id,
            self.handle(checkout_id).execute_update(
                CheckoutWorkflow.retry_compensation, id=update_id
            ),
        )

    async def resolve(
        self, checkout_id: uuid.UUID, note: str, update_id: str | None = None
    ) -> None:
        """Record that what a checkout could not give back was settled by hand; it then ends."""
        await _answer(
            checkout_id,
            self.handle(checkout_id).execute_update(
                CheckoutWorkflow.resolve, Resolution(note=note), id=update_id
            ),
        )

    async def attention_round(self, checkout_id: uuid.UUID) -> int:
        """How many times the checkout has waited at needs_attention so far."""
        return await self.handle(checkout_id).query(CheckoutWorkflow.attention_round)

    async def attention(self, checkout_id: uuid.UUID) -> Attention | None:
        """Why a checkout waits for an operator (None when it does not)."""
        return await self.handle(checkout_id).query(CheckoutWorkflow.attention)

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
