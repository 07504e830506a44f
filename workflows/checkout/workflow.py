"""CheckoutWorkflow: cart to paid, reserved, shippable order, or nothing held and nobody charged.

Orchestration only: no I/O here, and no activity implementation is imported: activities are
called by name (`activities.<domain>.contract`) with the options of `steps.STEPS`. Every step runs
on its domain's task queue, and its compensation is registered before it runs.

What buyers and operators see of a checkout (its status body in the checkout database, which
`GET /v1/checkouts/{id}` serves, and its search attributes) is published by local activities
when it changes in a way somebody acts on, and for any step that lasts longer than a second
(`LEAN_RECORDS`); a step that ends sooner is recorded with the next record.

The pivot is the capture (or, for a zero total, the decision that no payment is needed): before
it, any failure, a buyer's cancel or an expiry undoes everything; from it on, the buyer's cancel is
refused (409), the remaining steps are retried forward, and a step that fails for good, or an
operator's cancel, refunds the payment and cancels the order. A checkout always ends: when a
compensation fails for good, it waits at step `needs_attention` until an operator retries it or
records that it was settled by hand. The run itself never fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cart import contract as cart
    from activities.checkout import contract as record
    from activities.coupons import contract as coupons
    from activities.inventory import contract as inventory
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.products import contract as products
    from activities.shared import (
        ActivityName,
        CheckoutRef,
        MoneyValue,
        OrderRef,
        ReleaseInput,
    )
    from activities.shipping import contract as shipping
    from kit.money import Money
    from workflows.checkout.contract import (
        CHECKOUT_STATUS,
        CHECKOUT_STEP,
        CUSTOMER_ID,
        FINAL,
        ORDER_NUMBER,
        PAYMENT_NOT_REQUIRED,
        WAITING_PAYMENT,
        WORKFLOW_TYPE,
        CheckoutStatus,
        FailureCode,
        PaymentStatus,
        StepName,
        StepStatus,
    )
    from workflows.checkout.models import (
        Attention,
        CheckoutInput,
        CheckoutStatusBody,
        FailedCompensation,
        Failure,
        OrderSummary,
        PaymentEvent,
        PaymentSummary,
        Resolution,
    )
    from workflows.checkout.steps import (
        FORWARD,
        RECORD_TIMEOUT,
        RESERVATION_MARGIN,
        SLOW_STEP,
        STEPS,
        CheckoutStopped,
        failure_code,
        gather_all,
        is_cancellation,
    )
    from workflows.saga import Failed, Saga

InputT = TypeVar("InputT", bound=BaseModel)
ResultT = TypeVar("ResultT")

# Runs that recorded this marker get the behaviour of "every checkout ends" (interruptible
# steps, the payment re-read, final statuses in visibility, needs_attention instead of a failed
# run, a cancelled run that completes); runs recorded before it replay as they ran.
EVERY_CHECKOUT_ENDS = "every-checkout-ends"
# Runs that recorded this marker show their progress only when somebody can see it: the
# checkout's record and its search attributes are written together ("published"), once per
# status change (requires_action with its link, back to processing, the end), once per step that
# lasts longer than SLOW_STEP, and at every step of an undo; never for a step that ends sooner.
# The status body is read from the record (GET /v1/checkouts/{id} costs no workflow task).
# Without a coupon, no coupon is confirmed. Runs recorded before it record every stage.
LEAN_RECORDS = "lean-records"

ACTIVE = frozenset({CheckoutStatus.PROCESSING, CheckoutStatus.REQUIRES_ACTION})


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel an activity and wait until it has really stopped (or finished on its own)."""
    task.cancel()
    try:
        await task
    except (ActivityError, asyncio.CancelledError):
        pass  # cancelled, or failed on its own meanwhile: the caller stops either way


def _refused(code: FailureCode, message: str) -> ApplicationError:
    """An update refused by its validator: kept out of the history, answered with `code`."""
    return ApplicationError(message, type=code.value, non_retryable=True)


@workflow.defn(name=WORKFLOW_TYPE)
class CheckoutWorkflow:
    """One checkout, id `checkout-<checkout_id>`, on task queue `checkout`."""

    def __init__(self) -> None:
        self._input: CheckoutInput | None = None
        self._status = CheckoutStatus.PROCESSING
        self._step = StepName.LOCK_CART
        self._order: OrderSummary | None = None
        self._payment: PaymentSummary | None = None
        self._failure: Failure | None = None
        self._seen_events: set[str] = set()
        self._unhandled_events: list[PaymentEvent] = []
        self._cancel_requested = False  # the buyer's (or an operator's) cancel before the pivot
        self._force_cancel = False  # an operator's cancel: honoured after the pivot too (refund)
        self._pivot_started = False  # the capture is decided: the buyer's cancel is refused
        self._captured = False  # money was captured
        self._intent_id: str | None = None
        self._saga = Saga()
        self._step_started: datetime | None = None
        self._attention: Attention | None = None
        self._operator: Resolution | bool | None = None  # True: retry; a Resolution: resolve
        self._note: str | None = None
        self._ends = False  # EVERY_CHECKOUT_ENDS, decided once per run
        self._cancelled_run = False  # Temporal cancelled the run while a step had to finish
        self._shipment_dispatched = False
        self._lean = False  # LEAN_RECORDS, decided once per run
        # What was last published: the status in the record, the search attributes' values.
        self._published_status = CheckoutStatus.PROCESSING
        self._visible: dict[str, str] = {}
        # Steps that moved since the last record, and when each of them started.
        self._moved: dict[StepName, StepStatus] = {}
        self._started: dict[StepName, datetime] = {}
        self._stage = 0  # bumped at every step and every record: a slow-step watch ends
        self._stage_steps: tuple[StepName, ...] = ()  # the steps of the current stage
        self._publishing = asyncio.Lock()  # records are written in the order they were taken
        self._watching: asyncio.Task[None] | None = None  # the current step's slow-step watch

    # -- signals, updates and queries ----------------------------------------------------------

    @workflow.signal(name="payment_event")
    def payment_event(self, event: PaymentEvent) -> None:
        """A provider event (deduplicated on its id; any order; re-read before acting)."""
        if event.id in self._seen_events:
            return
        self._seen_events.add(event.id)
        self._unhandled_events.append(event)

    @workflow.signal(name="cancel")
    def cancel(self) -> None:
        """The buyer or an operator asks to stop; honoured until the pivot."""
        if not self._captured and not (self._ends and self._pivot_started):
            self._cancel_requested = True

    @workflow.update(name="request_cancel")
    def request_cancel(self) -> bool:
        """The buyer's cancel: accepted only when it will be honoured (see the validator)."""
        if self._captured or self._status not in ACTIVE:
            return False
        self._cancel_requested = True
        return True

    @request_cancel.validator
    def _may_cancel(self) -> None:
        if self._ended():
            raise _refused(FailureCode.CHECKOUT_ENDED, "the checkout has ended")
        if self._pivot_started:  # set before the capture is scheduled
            raise _refused(FailureCode.ALREADY_CAPTURED, "the payment is being captured")

    @workflow.update(name="operator_cancel")
    def operator_cancel(self) -> bool:
        """An operator's cancel: compensates at any point; True when the payment is refunded."""
        self._force_cancel = True
        return self._pivot_started

    @operator_cancel.validator
    def _may_force_cancel(self) -> None:
        if self._ended():
            raise _refused(FailureCode.CHECKOUT_ENDED, "the checkout has ended")

    @workflow.update(name="retry_compensation")
    def retry_compensation(self) -> None:
        """An operator mended the cause: run the failed compensations again."""
        self._operator = True

    @workflow.update(name="resolve")
    def resolve(self, resolution: Resolution) -> None:
        """An operator settled by hand what the failed compensations could not give back."""
        self._operator = resolution

    @retry_compensation.validator
    def _may_retry(self) -> None:
        self._must_wait_for_operator()

    @resolve.validator
    def _may_resolve(self, resolution: Resolution) -> None:
        self._must_wait_for_operator()

    @workflow.query(name="status")
    def status(self) -> CheckoutStatusBody:
        """The contract's checkout body."""
        assert self._input is not None
        return CheckoutStatusBody(
            checkout_id=self._input.checkout_id,
            status=self._status.value,
            step=self._step.value,
            order=self._order,
            payment=self._payment,
            failure=self._failure,
        )

    @workflow.query(name="compensations")
    def compensations(self) -> list[str]:
        """The compensations that have run, in the order they ran."""
        return list(self._saga.ran)

    @workflow.query(name="captured")
    def captured(self) -> bool:
        """Whether the payment is captured (past the pivot: a cancel is no longer honoured)."""
        return self._captured

    @workflow.query(name="attention")
    def attention(self) -> Attention | None:
        """What the checkout waits for an operator about (None unless at needs_attention)."""
        return self._attention

    def _ended(self) -> bool:
        return self._status in FINAL or self._step in (
            StepName.COMPENSATING,
            StepName.NEEDS_ATTENTION,
        )

    def _must_wait_for_operator(self) -> None:
        if self._status in FINAL:
            raise _refused(FailureCode.CHECKOUT_ENDED, "the checkout has ended")
        if self._attention is None or self._operator is not None:
            raise _refused(
                FailureCode.NOT_WAITING_FOR_OPERATOR, "the checkout is not waiting for an operator"
            )

    # -- the saga --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CheckoutInput) -> CheckoutStatusBody:
        """Drive the checkout to completed, failed, cancelled or expired."""
        self._input = input
        self._ends = workflow.patched(EVERY_CHECKOUT_ENDS)
        self._lean = self._ends and workflow.patched(LEAN_RECORDS)
        self._step_started = workflow.now()
        # Metrics go through the worker's runtime (Prometheus); they are not emitted on replay.
        workflow.metric_meter().create_counter("checkouts_started", "checkouts started").add(1)
        if self._lean:
            self._show_start(input)
        else:
            workflow.upsert_search_attributes(
                [
                    CUSTOMER_ID.value_set(str(input.user_id)),
                    CHECKOUT_STATUS.value_set(self._status.value),
                    CHECKOUT_STEP.value_set(self._step.value),
                ]
            )
        try:
            ended = await self._open_session(input)
            if ended is not None:
                return ended
            await self._forward(input)
        except CheckoutStopped as stop:
            await self._unwind(stop.status, stop.code, stop.message)
        except ActivityError as error:
            if self._ends and (is_cancellation(error) or self._stopping()):
                # An accepted cancel is honoured even when a sibling step failed meanwhile.
                await self._unwind(CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "cancelled")
            else:
                code, message = failure_code(error)
                await self._unwind(CheckoutStatus.FAILED, code, message)
        except asyncio.CancelledError:
            # Temporal cancellation (an operator in the web UI): undo everything, refunding if
            # captured; the run then completes with the `cancelled` body.
            await self._unwind(CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "cancelled")
            if not self._ends:
                self._count_end()
                raise
        self._count_end()
        return self.status()

    async def _open_session(self, input: CheckoutInput) -> CheckoutStatusBody | None:
        """Record the session; a checkout that has already ended answers its recorded outcome."""
        opened = await self._local(
            record.OPEN_SESSION,
            record.OpenSessionInput(
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                cart_id=input.cart_id,
                idempotency_key=input.idempotency_key,
                request_hash=input.request_hash,
            ),
        )
        if opened is None or opened.ended is None:
            return None
        # Never run an ended checkout again (a run started after its history was deleted).
        ended = opened.ended
        workflow.logger.warning("checkout.already_ended", extra={"status": ended.status})
        self._status, self._step = CheckoutStatus(ended.status), StepName(ended.step)
        self._order, self._payment, self._failure = ended.order, ended.payment, ended.failure
        workflow.upsert_search_attributes(
            [
                CHECKOUT_STATUS.value_set(self._status.value),
                CHECKOUT_STEP.value_set(self._step.value),
            ]
        )
        return ended

    async def _forward(self, input: CheckoutInput) -> None:
        """The stages in order; each raises to stop the checkout."""
        snapshot = await self._lock_cart(input)
        discount = await self._reserve(input, snapshot)
        order = await self._create_order(input, snapshot, discount)
        if self._ends and order.total.amount == 0:
            # Nothing to pay (a 100 % coupon, a free product): no payment is taken.
            self._pivot_started = True
            self._payment = PaymentSummary(status=PAYMENT_NOT_REQUIRED)
        else:
            await self._authorize(input, order)
            await self._capture(input)
        order_ref = OrderRef(checkout_id=input.checkout_id, order_id=order.order_id)
        await self._settle(order_ref)
        self._check_cancel()
        await self._ship(input, order_ref)
        self._check_cancel()
        await self._complete(input)

    async def _lock_cart(self, input: CheckoutInput) -> cart.CartSnapshot:
        await self._enter(StepName.LOCK_CART)
        self._saga.add("unlock_cart", lambda: self._call(cart.UNLOCK, self._cart_ref()))
        snapshot = await self._step_call(
            cart.LOCK,
            cart.LockCartInput(
                checkout_id=input.checkout_id, cart_id=input.cart_id, user_id=input.user_id
            ),
        )
        self._check_cancel()
        return snapshot

    async def _reserve(self, input: CheckoutInput, snapshot: cart.CartSnapshot) -> Money:
        """Price check, coupon and stock do not depend on each other: one concurrent stage."""
        checkout_id = input.checkout_id
        now = workflow.now()
        stage = [StepName.PRICE_CART]
        if input.coupon_code:
            stage.append(StepName.RESERVE_COUPON)
            self._saga.add("release_coupon", lambda: self._call(coupons.RELEASE, self._release()))
        stage.append(StepName.RESERVE_INVENTORY)
        self._saga.add("release_inventory", lambda: self._call(inventory.RELEASE, self._release()))
        await self._enter(*stage)
        price = self._step_call(
            products.PRICE_CART,
            products.PriceCartInput(currency=snapshot.currency, lines=snapshot.lines, at=now),
        )
        discount = (
            self._reserve_coupon(input, input.coupon_code, snapshot.subtotal(), now)
            if input.coupon_code
            else self._no_discount(snapshot.currency)
        )
        stock = self._step_call(
            inventory.RESERVE,
            inventory.ReserveInventoryInput(
                checkout_id=checkout_id,
                lines=snapshot.lines,
                expires_at=now + timedelta(seconds=input.payment_timeout_s) + RESERVATION_MARGIN,
            ),
        )
        _, money_off, _ = await gather_all(price, discount, stock)
        self._check_cancel()
        return cast(Money, money_off)

    async def _reserve_coupon(
        self, input: CheckoutInput, code: str, subtotal: Money, at: datetime
    ) -> Money:
        reservation = await self._step_call(
            coupons.RESERVE,
            coupons.ReserveCouponInput(
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                code=code,
                subtotal=MoneyValue.of(subtotal),
                at=at,
            ),
        )
        return reservation.discount.money()

    async def _no_discount(self, currency: str) -> Money:
        return Money.zero(currency)

    async def _create_order(
        self, input: CheckoutInput, snapshot: cart.CartSnapshot, discount: Money
    ) -> orders.OrderInfo:
        await self._enter(StepName.CREATE_ORDER)
        # Read at compensation time: the failure and whether money came back are known then.
        self._saga.add(
            "cancel_order",
            lambda: self._call(
                orders.CANCEL,
                orders.CancelOrderInput(
                    checkout_id=input.checkout_id,
                    reason=self._reason(),
                    refunded=self._captured,
                ),
            ),
        )
        subtotal = snapshot.subtotal()
        order = await self._step_call(
            orders.CREATE,
            orders.CreateOrderInput(
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                currency=snapshot.currency,
                lines=snapshot.lines,
                subtotal=MoneyValue.of(subtotal),
                discount=MoneyValue.of(discount),
                total=MoneyValue.of(subtotal - discount),
                coupon_code=input.coupon_code.strip().upper() if input.coupon_code else None,
                shipping_address=input.shipping_address,
                billing_address=input.billing_address,
            ),
        )
        self._order = OrderSummary(
            id=order.order_id,
            order_number=order.order_number,
            total_amount=order.total.amount,
            currency=order.total.currency,
        )
        if not self._lean:  # lean: published with the next record
            workflow.upsert_search_attributes([ORDER_NUMBER.value_set(order.order_number)])
        self._check_cancel()
        return order

    async def _authorize(self, input: CheckoutInput, order: orders.OrderInfo) -> None:
        await self._enter(StepName.AUTHORIZE_PAYMENT)
        authorize = payments.AuthorizeInput(
            checkout_id=input.checkout_id,
            order_id=order.order_id,
            amount=order.total,
            provider=input.payment_provider,
            token=input.payment_token,
        )
        self._saga.add("void_payment", lambda: self._call(payments.VOID, authorize))
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
                raise self._expired(input)
            wait = min(remaining, input.payment_recheck_s) if self._ends else remaining
            try:
                await workflow.wait_condition(
                    lambda: bool(self._unhandled_events) or self._stopping(), timeout=wait
                )
            except TimeoutError:
                if not self._ends:
                    raise self._expired(input) from None
            else:
                self._check_cancel()
                events, self._unhandled_events = self._unhandled_events, []
                if not any(event.intent == self._intent_id for event in events):
                    workflow.logger.warning(
                        "checkout.payment_event.foreign",
                        extra={"intents": [event.intent for event in events]},
                    )
                    continue
            # Never trust the event's copy: ask the provider what the intent is now.
            payment = await self._step_call(
                payments.REFRESH, CheckoutRef(checkout_id=input.checkout_id)
            )
            self._take_payment(payment)
            if self._lean and self._status != self._published_status:
                await self._publish()  # the buyer is no longer asked to act (or is again)
            if payment.status not in WAITING_PAYMENT:
                return payment

    async def _capture(self, input: CheckoutInput) -> None:
        # From here the capture is decided: a buyer's cancel is refused (409 already_captured).
        self._pivot_started = True
        await self._enter(StepName.CAPTURE_PAYMENT)
        payment = await self._shielded(
            self._call(payments.CAPTURE, CheckoutRef(checkout_id=input.checkout_id)),
            honour_cancel_after=True,
        )
        # Money moved. From here on, only forward (or a refund if a step fails for good).
        self._captured = True
        self._cancel_requested = False
        self._take_payment(payment)
        if self._cancelled_run:
            raise asyncio.CancelledError  # the run was cancelled during the capture: refund
        self._check_cancel()

    async def _settle(self, order_ref: OrderRef) -> None:
        """The pivot turns reservations into sales and the order into a paid one."""
        assert self._input is not None
        # Without a coupon code no coupon was reserved: there is nothing to confirm (lean).
        confirm = not self._lean or bool(self._input.coupon_code)
        coupon = [StepName.CONFIRM_COUPON] if confirm else []
        await self._enter(StepName.COMMIT_INVENTORY, *coupon, StepName.CONFIRM_ORDER)
        await gather_all(
            self._step_call(inventory.COMMIT, order_ref),
            *([self._step_call(coupons.CONFIRM, order_ref)] if confirm else []),
            self._step_call(
                orders.MARK_PAID,
                orders.OrderTransitionInput(
                    checkout_id=order_ref.checkout_id, reason=self._paid_reason()
                ),
            ),
        )

    async def _ship(self, input: CheckoutInput, order_ref: OrderRef) -> None:
        await self._enter(StepName.CREATE_SHIPMENT)
        # Read at compensation time: a booking without our record can exist only once the
        # booking was sent to the carrier.
        self._saga.add(
            "cancel_shipment",
            lambda: self._call(
                shipping.CANCEL,
                shipping.CancelShipmentInput(
                    checkout_id=input.checkout_id,
                    order_id=order_ref.order_id,
                    ship_to=input.shipping_address if self._shipment_dispatched else None,
                ),
            ),
        )
        self._shipment_dispatched = self._ends
        await self._step_call(
            shipping.CREATE,
            shipping.CreateShipmentInput(
                checkout_id=input.checkout_id,
                order_id=order_ref.order_id,
                ship_to=input.shipping_address,
            ),
        )

    async def _complete(self, input: CheckoutInput) -> None:
        await self._enter(StepName.COMPLETE)
        await gather_all(
            self._step_call(cart.CONVERT, self._cart_ref()),
            self._step_call(
                orders.MARK_FULFILLING,
                orders.OrderTransitionInput(
                    checkout_id=input.checkout_id, reason="shipment_created"
                ),
            ),
        )
        self._status = CheckoutStatus.COMPLETED
        if self._lean:
            self._moved[StepName.COMPLETE] = StepStatus.COMPLETED
            await self._publish()
            return
        if self._ends:
            workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(self._status.value)])
        await self._record({StepName.COMPLETE: StepStatus.COMPLETED})

    # -- when it does not go forward --------------------------------------------------------------

    async def _unwind(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        """Record the failure, run every compensation, and end in `status`.

        A compensation that fails for good parks the checkout at `needs_attention` until an
        operator retries it (after mending the cause) or resolves it (settled by hand).
        """
        failed_step = self._step
        self._failure = Failure(code=code, message=message)
        self._step = StepName.COMPENSATING
        if not self._lean:
            workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        if self._ends and self._status == CheckoutStatus.REQUIRES_ACTION:
            # Nothing is asked of the buyer any more: no live 3-D Secure link while undoing.
            self._status = CheckoutStatus.PROCESSING
            self._payment = None
            if not self._lean:
                workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(self._status.value)])
        moved = {failed_step: StepStatus.FAILED, StepName.COMPENSATING: StepStatus.STARTED}
        await self._shielded(self._progress(moved, error_code=code.value))
        failures = await self._saga.compensate(keep_going=self._ends)
        while failures and await self._wait_for_operator(failures, code):
            failures = await self._saga.compensate(keep_going=True)
        self._status = status
        self._step = StepName.COMPENSATING
        if self._payment is not None and self._captured:
            self._payment = PaymentSummary(status=PaymentStatus.REFUNDED)
        elif self._payment is not None and self._payment.status == PaymentStatus.AUTHORIZED:
            # The compensation released the authorization (a declined capture, a later step).
            self._payment = PaymentSummary(status=PaymentStatus.VOIDED)
        if not self._lean:
            workflow.upsert_search_attributes(
                [
                    CHECKOUT_STATUS.value_set(status.value),
                    *([CHECKOUT_STEP.value_set(self._step.value)] if self._ends else []),
                ]
            )
        await self._shielded(
            self._progress(
                {self._step: StepStatus.COMPLETED}, error_code=code.value, note=self._note
            )
        )

    async def _wait_for_operator(self, failures: list[Failed], code: FailureCode) -> bool:
        """Wait at needs_attention; True when the operator asks to retry, False when resolved."""
        self._attention = Attention(
            since=workflow.now(),
            failed=[FailedCompensation(name=f.name, error=f.error) for f in failures],
        )
        workflow.logger.error(
            "checkout.needs_attention", extra={"compensations": [f.name for f in failures]}
        )
        self._step = StepName.NEEDS_ATTENTION
        if not self._lean:
            workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        await self._shielded(
            self._progress(
                {StepName.COMPENSATING: StepStatus.FAILED, self._step: StepStatus.STARTED},
                error_code="compensation_failed",
            )
        )
        while self._operator is None:
            try:
                await workflow.wait_condition(lambda: self._operator is not None)
            except asyncio.CancelledError:
                # Cancelling the run cannot give back what failed: only an operator's retry or
                # resolve ends this wait (the UI's cancel would leave the checkout unended).
                workflow.logger.warning("checkout.needs_attention.cancel_ignored")
        action, self._operator, self._attention = self._operator, None, None
        if isinstance(action, Resolution):
            self._note = action.note
            return False
        self._step = StepName.COMPENSATING
        if not self._lean:
            workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        await self._shielded(
            self._progress(
                {StepName.NEEDS_ATTENTION: StepStatus.COMPLETED, self._step: StepStatus.STARTED},
                error_code=code.value,
            )
        )
        return True

    # -- helpers ---------------------------------------------------------------------------------

    def _cart_ref(self) -> cart.CartRef:
        assert self._input is not None
        return cart.CartRef(checkout_id=self._input.checkout_id, cart_id=self._input.cart_id)

    def _reason(self) -> str:
        return self._failure.code.value if self._failure else "compensation"

    def _paid_reason(self) -> str:
        return "payment_captured" if self._captured else "no_payment_required"

    def _release(self) -> ReleaseInput:
        # Read at compensation time: from the pivot on, units already taken go back on the shelf.
        assert self._input is not None
        return ReleaseInput(
            checkout_id=self._input.checkout_id,
            reason=self._reason(),
            restock=self._captured or self._pivot_started,
        )

    def _expired(self, input: CheckoutInput) -> CheckoutStopped:
        return CheckoutStopped(
            CheckoutStatus.EXPIRED,
            FailureCode.PAYMENT_TIMEOUT,
            f"no payment confirmation within {input.payment_timeout_s} s",
        )

    def _stopping(self) -> bool:
        """An accepted cancel waits to be honoured: the buyer's before the pivot, an operator's
        at any point."""
        if self._force_cancel:
            return True
        return self._cancel_requested and not self._pivot_started  # set before any capture

    def _check_cancel(self) -> None:
        if self._stopping() or (not self._ends and self._cancel_requested and not self._captured):
            raise CheckoutStopped(
                CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "the checkout was cancelled"
            )

    def _take_payment(self, payment: payments.PaymentResult) -> None:
        self._intent_id = payment.intent_id or self._intent_id
        self._payment = PaymentSummary(status=payment.status, next_action=payment.next_action)
        waiting_for_buyer = payment.status == PaymentStatus.REQUIRES_ACTION
        status = CheckoutStatus.REQUIRES_ACTION if waiting_for_buyer else CheckoutStatus.PROCESSING
        if status != self._status:
            self._status = status
            if not self._lean:  # lean: published by the caller, with the record
                workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(status.value)])

    async def _enter(self, *steps: StepName) -> None:
        """Mark `steps` started (the previous one completed) in the search attributes and the DB.

        Lean: published now if the status changed since the last record, else only if the step
        is still running after SLOW_STEP."""
        moved: dict[StepName, StepStatus] = {}
        if self._step not in steps:
            moved[self._step] = StepStatus.COMPLETED
            self._observe_step_end()
        for step in steps:
            moved[step] = StepStatus.STARTED
        self._step = steps[-1]
        if not self._lean:
            workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
            await self._record(moved)
            return
        # Every step of the stage before has ended (not only its last one).
        ended = {step: StepStatus.COMPLETED for step in self._stage_steps if step not in steps}
        self._stage_steps = steps
        self._note_moves(ended | moved)
        if self._status != self._published_status:
            await self._publish()
        else:
            self._stage += 1
            self._watching = asyncio.ensure_future(self._publish_if_slow(self._stage))

    def _note_moves(self, moved: dict[StepName, StepStatus]) -> None:
        """Steps that moved, kept until the next record (with when each started)."""
        now = workflow.now()
        for step, status in moved.items():
            self._moved[step] = status
            self._started.setdefault(step, now)

    async def _publish_if_slow(self, stage: int) -> None:
        """Publish the step if it is still the current one after SLOW_STEP."""
        try:
            await workflow.wait_condition(lambda: self._stage != stage, timeout=SLOW_STEP)
        except TimeoutError:
            await self._publish()

    async def _progress(
        self,
        moved: dict[StepName, StepStatus],
        error_code: str | None = None,
        note: str | None = None,
    ) -> None:
        """Record `moved` (and publish the search attributes with it, lean)."""
        if not self._lean:
            await self._record(moved, error_code=error_code, note=note)
            return
        self._note_moves(moved)
        await self._publish(error_code=error_code, note=note)

    async def _publish(self, error_code: str | None = None, note: str | None = None) -> None:
        """Show the checkout as it is now: one upsert of the search attributes that changed,
        one record of the status body and of the steps that moved (lean)."""
        self._stage += 1  # a watch still waiting has nothing left to show
        async with self._publishing:
            self._show_changed()
            moved, self._moved = self._moved, {}
            started, self._started = self._started, {}
            self._published_status = self._status
            await self._record(moved, error_code=error_code, note=note, started=started)

    def _show_start(self, input: CheckoutInput) -> None:
        """The search attributes a run starts with, upserted only where the start lacked them."""
        given = workflow.info().typed_search_attributes
        wanted = {
            CUSTOMER_ID: str(input.user_id),
            CHECKOUT_STATUS: self._status.value,
            CHECKOUT_STEP: self._step.value,
        }
        missing = [key.value_set(value) for key, value in wanted.items() if given.get(key) != value]
        if missing:
            workflow.upsert_search_attributes(missing)
        self._visible = {key.name: value for key, value in wanted.items()}

    def _show_changed(self) -> None:
        """One upsert of the search attributes whose value changed since they were shown."""
        current = {CHECKOUT_STATUS: self._status.value, CHECKOUT_STEP: self._step.value}
        if self._order is not None:
            current[ORDER_NUMBER] = self._order.order_number
        changed = [key for key, value in current.items() if self._visible.get(key.name) != value]
        if changed:
            workflow.upsert_search_attributes([key.value_set(current[key]) for key in changed])
            self._visible.update({key.name: current[key] for key in changed})

    def _observe_step_end(self) -> None:
        now = workflow.now()
        if self._step_started is not None:
            workflow.metric_meter().create_histogram_timedelta(
                "checkout_step_duration", "time spent in a checkout step"
            ).with_additional_attributes({"step": self._step.value}).record(
                now - self._step_started
            )
        self._step_started = now

    def _count_end(self) -> None:
        code = self._failure.code.value if self._failure else "none"
        workflow.metric_meter().create_counter(
            "checkouts_ended", "checkouts ended, by status and failure code"
        ).with_additional_attributes({"status": self._status.value, "code": code}).add(1)

    async def _record(
        self,
        steps: dict[StepName, StepStatus],
        error_code: str | None = None,
        note: str | None = None,
        started: dict[StepName, datetime] | None = None,
    ) -> None:
        assert self._input is not None
        await self._local(
            record.RECORD_PROGRESS,
            record.ProgressInput(
                checkout_id=self._input.checkout_id,
                steps={name.value: status.value for name, status in steps.items()},
                error_code=error_code,
                body=self.status(),
                note=note,
                started_at={name.value: at for name, at in (started or {}).items()},
            ),
        )

    async def _shielded(
        self, call: Awaitable[ResultT], *, honour_cancel_after: bool = False
    ) -> ResultT:
        """Run `call` to its end even if the run is cancelled meanwhile: the records of the undo,
        and the capture (`honour_cancel_after`: the cancellation is remembered and honoured once
        the capture is known, with a refund, so a capture is never left unknown)."""
        if not self._ends:
            return await call
        task = asyncio.ensure_future(call)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    raise
                self._cancelled_run = self._cancelled_run or honour_cancel_after
                workflow.logger.warning("checkout.cancel_deferred")

    async def _step_call(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT:
        """A forward step that an accepted cancel interrupts: the attempt in flight is cancelled
        and waited for (its compensation is registered already), then the checkout unwinds."""
        if not self._ends:
            return await self._call(activity, arg)
        task = asyncio.ensure_future(self._call(activity, arg))
        try:
            await workflow.wait_condition(lambda: task.done() or self._stopping())
        except asyncio.CancelledError:
            await _cancelled(task)  # the run is cancelled: the attempt in flight ends first
            raise
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
            cancellation_type=(
                workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if self._ends
                else workflow.ActivityCancellationType.TRY_CANCEL
            ),
            result_type=activity.result,
        )
        return result

    async def _local(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT | None:
        """A local activity on the checkout worker (its result None in older histories)."""
        result: ResultT | None = await workflow.execute_local_activity(
            activity.name,
            arg,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=FORWARD,
            result_type=cast(type, activity.result | None),
        )
        return result
