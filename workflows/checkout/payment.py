"""How the checkout workflow runs its steps, and everything about the buyer's payment.

`StepRunner` runs a domain activity with its options (`steps.STEPS`), interrupted by an accepted
cancel; `PaymentSteps` authorizes, waits for the provider (3-D Secure, an asynchronous method),
after a decline waits for the buyer's next method and confirms the same intent with it
(`on_decline: retry`), captures, undoes the payment, and settles what provider events report at
any other time.
Workflow code: deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.shared import ActivityName, CheckoutRef
    from workflows.checkout.cancel import CancelState
    from workflows.checkout.contract import (
        FINAL,
        WAITING_PAYMENT,
        CheckoutStatus,
        FailureCode,
        PaymentStatus,
        StepName,
    )
    from workflows.checkout.models import (
        CheckoutInput,
        MoneyOutcome,
        NewPaymentMethod,
        PaymentError,
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
# With `on_decline: retry`, how many new payment methods a checkout tries after the first
# decline; declined once more after that, it fails (card testing stays bounded).
MAX_CONFIRMATIONS = 5


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

    def __init__(self) -> None:
        super().__init__()
        self._new_method: str | None = None  # accepted by retry_payment, not yet confirmed
        self._confirmations = 0  # new payment methods tried after a decline

    @workflow.update(name="retry_payment")
    def retry_payment(self, method: NewPaymentMethod) -> None:
        """The buyer's next payment method after a decline: the same intent is confirmed with
        it. Accepted only while the checkout waits at `requires_payment_method`."""
        self._new_method = method.payment_method

    @retry_payment.validator
    def _may_retry_payment(self, method: NewPaymentMethod) -> None:
        if self._status in FINAL:
            raise ApplicationError(
                "the checkout has ended", type=FailureCode.CHECKOUT_ENDED.value, non_retryable=True
            )
        waiting = self._status == CheckoutStatus.REQUIRES_PAYMENT_METHOD
        if not waiting or self._new_method is not None or self._cancel.honoured:
            raise ApplicationError(
                f"the checkout is {self._status.value}, not waiting for a payment method",
                type=FailureCode.NOT_AWAITING_PAYMENT_METHOD.value,
                non_retryable=True,
            )

    async def _authorize(self, input: CheckoutInput, order: orders.OrderInfo) -> None:
        await self._enter(StepName.AUTHORIZE_PAYMENT)
        # The payment window, for a checkout that waits for another method after a decline.
        deadline = workflow.now() + timedelta(seconds=input.payment_timeout_s)
        authorize = payments.AuthorizeInput(
            checkout_id=input.checkout_id,
            order_id=order.order_id,
            amount=order.total,
            provider=input.payment_provider,
            token=input.payment_token,
            cancel_declined=input.on_decline == "retry",
        )
        self._saga.add("void_payment", lambda: self._void(authorize))
        payment = await self._step_call(payments.AUTHORIZE, authorize)
        self._take_payment(payment)
        if payment.status in WAITING_PAYMENT:
            payment = await self._await_payment(input)
        while self._may_try_again(input, payment):
            payment = await self._confirm_new_method(input, payment, deadline)
        if payment.status != PaymentStatus.AUTHORIZED:
            reason = payment.error_code or payment.error_type or payment.status
            raise CheckoutStopped(
                CheckoutStatus.FAILED,
                FailureCode.PAYMENT_DECLINED,
                f"{payment.message} ({reason})" if payment.message else f"declined ({reason})",
            )
        self._check_cancel()

    def _may_try_again(self, input: CheckoutInput, payment: payments.PaymentResult) -> bool:
        """Whether a declined payment waits for another method (`on_decline: retry`)."""
        return (
            input.on_decline == "retry"
            and payment.status == PaymentStatus.FAILED
            and self._confirmations < MAX_CONFIRMATIONS
        )

    async def _confirm_new_method(
        self, input: CheckoutInput, declined: payments.PaymentResult, deadline: datetime
    ) -> payments.PaymentResult:
        """Wait at requires_payment_method for the buyer's next method, then confirm the same
        intent with it; the reservations are held meanwhile, until the payment window ends."""
        method = await self._wait_for_method(declined, deadline)
        self._confirmations += 1
        self._status = CheckoutStatus.PROCESSING
        await self._enter(StepName.AUTHORIZE_PAYMENT)
        confirm = payments.ConfirmInput(
            checkout_id=input.checkout_id, attempt=self._confirmations, payment_method=method
        )
        payment = await self._step_call(payments.CONFIRM, confirm)
        self._take_payment(payment)
        if payment.status in WAITING_PAYMENT:
            payment = await self._await_payment(input, deadline)
        return payment

    async def _wait_for_method(self, declined: payments.PaymentResult, deadline: datetime) -> str:
        """Show the decline (buyer-safe) and wait for `retry_payment`, a cancel, or the end of
        the payment window (expired)."""
        self._status = CheckoutStatus.REQUIRES_PAYMENT_METHOD
        self._payment = PaymentSummary(status=declined.status, last_error=_last_error(declined))
        self._waiting_for = f"a new payment method until {deadline:%H:%M:%S} UTC"
        await self._enter(StepName.AWAITING_PAYMENT)  # published: the status changed
        remaining = (deadline - workflow.now()).total_seconds()
        try:
            if remaining <= 0:
                raise TimeoutError
            await workflow.wait_condition(
                lambda: self._new_method is not None or self._cancel.honoured, timeout=remaining
            )
        except TimeoutError:
            self._status, self._waiting_for = CheckoutStatus.PROCESSING, None
            raise CheckoutStopped(
                CheckoutStatus.EXPIRED,
                FailureCode.PAYMENT_TIMEOUT,
                "no new payment method within the payment window",
            ) from None
        if self._cancel.honoured:
            self._status, self._waiting_for = CheckoutStatus.PROCESSING, None
            self._check_cancel()
        method, self._new_method, self._waiting_for = self._new_method, None, None
        assert method is not None
        return method

    async def _await_payment(
        self, input: CheckoutInput, window_end: datetime | None = None
    ) -> payments.PaymentResult:
        """Wait for the provider to settle the authorization, bounded by the payment window
        (from now, or `window_end` for a new method tried after a decline).

        Provider events wake the wait; without one, the intent is re-read every
        `payment_recheck_s` all the same, so a lost webhook never decides a checkout.
        """
        await self._enter(StepName.AWAITING_PAYMENT)
        deadline = window_end or workflow.now() + timedelta(seconds=input.payment_timeout_s)
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


def _last_error(payment: payments.PaymentResult) -> PaymentError:
    """What the buyer is told about a declined payment: buyer-safe codes and sentence (the
    payments activity made fraud-related declines generic)."""
    code = payment.error_type or "card_declined"
    decline = payment.error_code if payment.error_code != code else None
    return PaymentError(
        code=code, decline_code=decline, message=payment.message or "Your card was declined."
    )
