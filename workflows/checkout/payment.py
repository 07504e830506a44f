"""How the checkout workflow runs its steps, and everything about the buyer's payment.

`StepRunner` runs a domain activity with its options (`steps.STEPS`), interrupted by an accepted
cancel; `PaymentSteps` authorizes, waits for the provider (3-D Secure, an asynchronous method),
captures, undoes the payment, and settles what provider events report at any other time.
Workflow code: deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.shared import ActivityName, CheckoutRef
    from workflows.checkout.cancel import CancelState
    from workflows.checkout.contract import (
        WAITING_PAYMENT,
        CheckoutStatus,
        FailureCode,
        PaymentStatus,
        StepName,
    )
    from workflows.checkout.models import (
        CheckoutInput,
        MoneyOutcome,
        PaymentEvent,
        PaymentSummary,
    )
    from workflows.checkout.progress import Progress
    from workflows.checkout.steps import STEPS, CheckoutStopped
    from workflows.saga import Saga

InputT = TypeVar("InputT", bound=BaseModel)
ResultT = TypeVar("ResultT")

MONEY = {"canceled": MoneyOutcome.VOIDED, "refunded": MoneyOutcome.REFUNDED}
# Provider events saying the checkout's own intent holds nothing (its own void or refund, a
# decline): the payment's compensation re-reads that intent, so they leave nothing to settle.
RELEASED = frozenset(
    {"payment_intent.canceled", "payment_intent.payment_failed", "charge.refunded"}
)


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel an activity and wait until it has really stopped (or finished on its own)."""
    task.cancel()
    try:
        await task
    except (ActivityError, asyncio.CancelledError):
        pass  # cancelled, or failed on its own meanwhile: the caller stops either way


class StepRunner:
    """Runs the checkout's activities; an accepted cancel interrupts the forward ones."""

    _cancel: CancelState
    _step: StepName
    _progress: Progress

    async def _enter(self, *steps: StepName) -> None:
        previous, self._step = self._step, steps[-1]
        await self._progress.enter(previous, steps)

    def _check_cancel(self) -> None:
        if self._cancel.honoured:
            raise CheckoutStopped(
                CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "the checkout was cancelled"
            )

    async def _step_call(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT:
        """A forward step that an accepted cancel interrupts: the attempt in flight is cancelled
        and waited for (its compensation is registered already), then the checkout unwinds."""
        task = asyncio.ensure_future(self._call(activity, arg))
        await workflow.wait_condition(lambda: task.done() or self._cancel.honoured)
        if not task.done():
            await _cancelled(task)
            self._check_cancel()
        return task.result()

    async def _call(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT:
        """Run a domain activity with its options from `STEPS`."""
        options = STEPS[activity.name]
        result: ResultT = await workflow.execute_activity(
            activity.name,
            arg,
            task_queue=options.queue.value,
            start_to_close_timeout=options.timeout,
            retry_policy=options.retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            result_type=activity.result,
            summary=options.summary,
        )
        return result


class PaymentSteps(StepRunner):
    """The payment's steps, its compensation, and the provider events the run receives."""

    _input: CheckoutInput
    _status: CheckoutStatus
    _payment: PaymentSummary | None
    _intent_id: str | None
    _unhandled_events: list[PaymentEvent]  # received, not yet read
    _foreign_events: list[PaymentEvent]  # about another intent: settled at the end
    _saga: Saga
    _waiting_for: str | None
    _money: MoneyOutcome | None

    async def _authorize(self, input: CheckoutInput, order: orders.OrderInfo) -> None:
        await self._enter(StepName.AUTHORIZE_PAYMENT)
        authorize = payments.AuthorizeInput(
            checkout_id=input.checkout_id,
            order_id=order.order_id,
            amount=order.total,
            provider=input.payment_provider,
            token=input.payment_token,
        )
        self._saga.add("void_payment", lambda: self._void(authorize))
        payment = await self._step_call(payments.AUTHORIZE, authorize)
        self._take_payment(payment)
        if payment.status in WAITING_PAYMENT:
            payment = await self._await_payment(input)
        if payment.status != PaymentStatus.AUTHORIZED:
            raise CheckoutStopped(
                CheckoutStatus.FAILED,
                FailureCode.PAYMENT_DECLINED,
                f"the payment was declined ({payment.error_code or payment.status})",
            )
        self._check_cancel()

    async def _await_payment(self, input: CheckoutInput) -> payments.PaymentResult:
        """Wait for the provider to settle the authorization, bounded by the payment window.

        Provider events wake the wait; without one, the intent is re-read every
        `payment_recheck_s` all the same, so a lost webhook never decides a checkout.
        """
        await self._enter(StepName.AWAITING_PAYMENT)
        deadline = workflow.now() + timedelta(seconds=input.payment_timeout_s)
        while True:
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                raise CheckoutStopped(
                    CheckoutStatus.EXPIRED,
                    FailureCode.PAYMENT_TIMEOUT,
                    f"no payment confirmation within {input.payment_timeout_s} s",
                )
            self._waiting_for = f"the payment's confirmation until {deadline:%H:%M:%S} UTC"
            self._progress.show_details()
            try:
                await workflow.wait_condition(
                    lambda: bool(self._unhandled_events) or self._cancel.honoured,
                    timeout=min(remaining, input.payment_recheck_s),
                )
            except TimeoutError:
                pass  # re-read the intent all the same
            else:
                self._check_cancel()
                events, self._unhandled_events = self._unhandled_events, []
                foreign = [event for event in events if event.intent != self._intent_id]
                self._foreign_events += foreign
                if len(foreign) == len(events):
                    continue
            # Never trust the event's copy: ask the provider what the intent is now.
            payment = await self._step_call(
                payments.REFRESH, CheckoutRef(checkout_id=input.checkout_id)
            )
            self._take_payment(payment)
            if self._progress.status_changed():
                await self._progress.publish()  # the buyer is no longer asked to act (or is)
            if payment.status not in WAITING_PAYMENT:
                self._waiting_for = None
                return payment

    async def _capture(self, input: CheckoutInput) -> None:
        # From here the capture is decided: a buyer's cancel is refused (409 already_captured);
        # an operator's is honoured once the capture is known, with a refund.
        self._cancel.pivot = True
        await self._enter(StepName.CAPTURE_PAYMENT)
        payment = await self._call(payments.CAPTURE, CheckoutRef(checkout_id=input.checkout_id))
        # Money moved. From here on, only forward (or a refund if a step fails for good).
        self._cancel.captured = True
        self._take_payment(payment)
        self._check_cancel()

    async def _void(self, authorize: payments.AuthorizeInput) -> payments.VoidResult:
        """The payment's compensation; what it did is the operator's cancel's answer.

        It re-reads the intent, so the events about it received so far are acted on by it; only
        later ones are settled afterwards."""
        own = self._intent_id
        self._unhandled_events = [e for e in self._unhandled_events if e.intent != own]
        result = await self._call(payments.VOID, authorize)
        self._money = MONEY.get(result.action, MoneyOutcome.NOTHING_TO_REFUND)
        return result

    async def _settle_events(self) -> None:
        """Act on the provider events the run has not used: each intent is re-read and what it
        still holds is released (a late authorization voided, a late capture refunded), except
        the payment of a completed checkout's order."""
        while self._unhandled_events or self._foreign_events:
            events = self._foreign_events + self._unhandled_events
            self._foreign_events, self._unhandled_events = [], []
            own = self._intent_id
            holding = [e for e in events if e.intent != own or e.type not in RELEASED]
            for intent in sorted({event.intent for event in holding}):
                if self._status == CheckoutStatus.COMPLETED and intent == own:
                    continue
                await self._settle_intent(intent)

    async def _settle_intent(self, intent: str) -> None:
        """Settle one intent named by a provider event; one the provider does not know (a forged
        or foreign event) is logged, never a reason to fail the run."""
        try:
            await self._call(
                payments.SETTLE_ENDED,
                payments.SettleInput(checkout_id=self._input.checkout_id, intent_id=intent),
            )
        except ActivityError as error:
            workflow.logger.error(
                "checkout.payment_event.unsettled", extra={"intent": intent, "error": str(error)}
            )

    def _take_payment(self, payment: payments.PaymentResult) -> None:
        self._intent_id = payment.intent_id or self._intent_id
        self._payment = PaymentSummary(status=payment.status, next_action=payment.next_action)
        waiting_for_buyer = payment.status == PaymentStatus.REQUIRES_ACTION
        self._status = (
            CheckoutStatus.REQUIRES_ACTION if waiting_for_buyer else CheckoutStatus.PROCESSING
        )
