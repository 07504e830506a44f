"""CheckoutWorkflow: cart to paid, reserved, shippable order, or nothing held and nobody charged.

Orchestration only: no I/O here, and no activity implementation is imported: activities are
called by name (`activities.<domain>.contract`) with the options of `STEPS`. Every step runs on
its domain's task queue, and its compensation is registered before it runs. Capture is the pivot:
before it, any failure, a cancel or an expiry undoes everything; after it, the remaining steps are
retried forward, and a step that fails for good refunds the payment and cancels the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
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
        ORDER_NUMBER,
        WAITING_PAYMENT,
        WORKFLOW_TYPE,
        CheckoutStatus,
        FailureCode,
        PaymentStatus,
        StepName,
        StepStatus,
        TaskQueue,
    )
    from workflows.checkout.models import (
        CheckoutInput,
        CheckoutStatusBody,
        Failure,
        OrderSummary,
        PaymentEvent,
        PaymentSummary,
    )
    from workflows.saga import Saga

InputT = TypeVar("InputT", bound=BaseModel)
ResultT = TypeVar("ResultT")

# Transient failures (a database restart, a provider timeout, a killed worker) are retried without
# limit: giving up would leave the outcome unknown. Business failures are non-retryable errors.
# A checkout stuck on retries shows up in the ops views (attempt count, last failure).
FORWARD = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
DB_STEP_TIMEOUT = timedelta(seconds=10)
# Longer than the provider client's own timeout, so a slow provider call ends in the client (and is
# retried under the same idempotency key) rather than being abandoned mid-flight.
PROVIDER_STEP_TIMEOUT = timedelta(seconds=30)
RECORD_TIMEOUT = timedelta(seconds=10)
# Reservations outlive the payment window by this much; the sweeper frees them if a checkout
# vanished without compensating.
RESERVATION_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class StepOptions:
    """How the workflow runs one activity: where, how long an attempt may take, how to retry."""

    queue: TaskQueue
    timeout: timedelta = DB_STEP_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: FORWARD)


# Every activity the checkout calls, with its options (a test checks each queue is its domain's).
STEPS: dict[str, StepOptions] = {
    cart.LOCK.name: StepOptions(TaskQueue.CART),
    cart.UNLOCK.name: StepOptions(TaskQueue.CART),
    cart.CONVERT.name: StepOptions(TaskQueue.CART),
    products.PRICE_CART.name: StepOptions(TaskQueue.PRODUCTS),
    coupons.RESERVE.name: StepOptions(TaskQueue.COUPONS),
    coupons.RELEASE.name: StepOptions(TaskQueue.COUPONS),
    coupons.CONFIRM.name: StepOptions(TaskQueue.COUPONS),
    inventory.RESERVE.name: StepOptions(TaskQueue.INVENTORY),
    inventory.RELEASE.name: StepOptions(TaskQueue.INVENTORY),
    inventory.COMMIT.name: StepOptions(TaskQueue.INVENTORY),
    orders.CREATE.name: StepOptions(TaskQueue.ORDERS),
    orders.CANCEL.name: StepOptions(TaskQueue.ORDERS),
    orders.MARK_PAID.name: StepOptions(TaskQueue.ORDERS),
    orders.MARK_FULFILLING.name: StepOptions(TaskQueue.ORDERS),
    payments.AUTHORIZE.name: StepOptions(TaskQueue.PAYMENTS, PROVIDER_STEP_TIMEOUT),
    payments.REFRESH.name: StepOptions(TaskQueue.PAYMENTS, PROVIDER_STEP_TIMEOUT),
    payments.CAPTURE.name: StepOptions(TaskQueue.PAYMENTS, PROVIDER_STEP_TIMEOUT),
    payments.VOID.name: StepOptions(TaskQueue.PAYMENTS, PROVIDER_STEP_TIMEOUT),
    shipping.CREATE.name: StepOptions(TaskQueue.SHIPPING, PROVIDER_STEP_TIMEOUT),
    shipping.CANCEL.name: StepOptions(TaskQueue.SHIPPING),
}


class CheckoutStopped(Exception):
    """Ends the forward path: the checkout failed, was cancelled or expired. Never leaves run()."""

    def __init__(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def failure_code(error: BaseException) -> tuple[FailureCode, str]:
    """The failure code an activity failure carries (`internal_error` when it carries none)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            try:
                return FailureCode(cause.type), cause.message
            except ValueError:
                pass
        cause = cause.__cause__
    return FailureCode.INTERNAL_ERROR, str(error)


async def gather_all(*calls: Awaitable[Any]) -> list[Any]:
    """Run `calls` concurrently and wait for every one, then raise the first failure.

    Waiting also when one fails matters: compensating while a sibling is still reserving would
    release before it reserves.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


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
        self._cancel_requested = False
        self._captured = False
        self._intent_id: str | None = None
        self._saga = Saga()
        self._step_started: datetime | None = None

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
        """The buyer or an operator asks to stop; honoured until the payment is captured."""
        if not self._captured:
            self._cancel_requested = True

    @workflow.update(name="request_cancel")
    def request_cancel(self) -> bool:
        """Like the `cancel` signal, but answers whether it was honoured (False once captured)."""
        if self._captured or self._status not in (
            CheckoutStatus.PROCESSING,
            CheckoutStatus.REQUIRES_ACTION,
        ):
            return False
        self._cancel_requested = True
        return True

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

    # -- the saga --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CheckoutInput) -> CheckoutStatusBody:
        """Drive the checkout to completed, failed, cancelled or expired."""
        self._input = input
        self._step_started = workflow.now()
        # Metrics go through the worker's runtime (Prometheus); they are not emitted on replay.
        workflow.metric_meter().create_counter("checkouts_started", "checkouts started").add(1)
        workflow.upsert_search_attributes(
            [
                CUSTOMER_ID.value_set(str(input.user_id)),
                CHECKOUT_STATUS.value_set(self._status.value),
                CHECKOUT_STEP.value_set(self._step.value),
            ]
        )
        await self._local(
            record.OPEN_SESSION,
            record.OpenSessionInput(
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                cart_id=input.cart_id,
                idempotency_key=input.idempotency_key,
                request_hash=input.request_hash,
            ),
        )
        try:
            await self._forward(input)
        except CheckoutStopped as stop:
            await self._unwind(stop.status, stop.code, stop.message)
        except ActivityError as error:
            code, message = failure_code(error)
            await self._unwind(CheckoutStatus.FAILED, code, message)
        except asyncio.CancelledError:
            # Temporal cancellation (an operator): undo everything, refunding if captured.
            await self._unwind(CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "cancelled")
            self._count_end()
            raise
        self._count_end()
        return self.status()

    async def _forward(self, input: CheckoutInput) -> None:
        """The stages in order; each raises to stop the checkout."""
        snapshot = await self._lock_cart(input)
        discount = await self._reserve(input, snapshot)
        order = await self._create_order(input, snapshot, discount)
        await self._authorize(input, order)
        await self._capture(input)
        order_ref = OrderRef(checkout_id=input.checkout_id, order_id=order.order_id)
        await self._settle(order_ref)
        await self._ship(input, order_ref)
        await self._complete(input)

    async def _lock_cart(self, input: CheckoutInput) -> cart.CartSnapshot:
        await self._enter(StepName.LOCK_CART)
        self._saga.add("unlock_cart", lambda: self._call(cart.UNLOCK, self._cart_ref()))
        snapshot = await self._call(
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
        price = self._call(
            products.PRICE_CART,
            products.PriceCartInput(currency=snapshot.currency, lines=snapshot.lines, at=now),
        )
        discount = (
            self._reserve_coupon(input, input.coupon_code, snapshot.subtotal(), now)
            if input.coupon_code
            else self._no_discount(snapshot.currency)
        )
        stock = self._call(
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
        reservation = await self._call(
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
        order = await self._call(
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
        payment = await self._call(payments.AUTHORIZE, authorize)
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
        """Wait for the provider to settle the authorization, bounded by the payment window."""
        await self._enter(StepName.AWAITING_PAYMENT)
        deadline = workflow.now() + timedelta(seconds=input.payment_timeout_s)
        while True:
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                raise self._expired(input)
            try:
                await workflow.wait_condition(
                    lambda: bool(self._unhandled_events) or self._cancel_requested,
                    timeout=remaining,
                )
            except TimeoutError:
                raise self._expired(input) from None
            self._check_cancel()
            events, self._unhandled_events = self._unhandled_events, []
            if not any(event.intent == self._intent_id for event in events):
                workflow.logger.warning(
                    "checkout.payment_event.foreign",
                    extra={"intents": [event.intent for event in events]},
                )
                continue
            # Never trust the event's copy: ask the provider what the intent is now.
            payment = await self._call(payments.REFRESH, CheckoutRef(checkout_id=input.checkout_id))
            self._take_payment(payment)
            if payment.status not in WAITING_PAYMENT:
                return payment

    async def _capture(self, input: CheckoutInput) -> None:
        await self._enter(StepName.CAPTURE_PAYMENT)
        payment = await self._call(payments.CAPTURE, CheckoutRef(checkout_id=input.checkout_id))
        # The pivot: money moved. From here on, only forward (or a refund if a step fails for good).
        self._captured = True
        self._cancel_requested = False
        self._take_payment(payment)

    async def _settle(self, order_ref: OrderRef) -> None:
        """The captured payment turns reservations into sales and the order into a paid one."""
        await self._enter(
            StepName.COMMIT_INVENTORY, StepName.CONFIRM_COUPON, StepName.CONFIRM_ORDER
        )
        await gather_all(
            self._call(inventory.COMMIT, order_ref),
            self._call(coupons.CONFIRM, order_ref),
            self._call(
                orders.MARK_PAID,
                orders.OrderTransitionInput(
                    checkout_id=order_ref.checkout_id, reason="payment_captured"
                ),
            ),
        )

    async def _ship(self, input: CheckoutInput, order_ref: OrderRef) -> None:
        await self._enter(StepName.CREATE_SHIPMENT)
        self._saga.add("cancel_shipment", lambda: self._call(shipping.CANCEL, order_ref))
        await self._call(
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
            self._call(cart.CONVERT, self._cart_ref()),
            self._call(
                orders.MARK_FULFILLING,
                orders.OrderTransitionInput(
                    checkout_id=input.checkout_id, reason="shipment_created"
                ),
            ),
        )
        self._status = CheckoutStatus.COMPLETED
        await self._record({StepName.COMPLETE: StepStatus.COMPLETED})

    # -- helpers ---------------------------------------------------------------------------------

    def _cart_ref(self) -> cart.CartRef:
        assert self._input is not None
        return cart.CartRef(checkout_id=self._input.checkout_id, cart_id=self._input.cart_id)

    def _reason(self) -> str:
        return self._failure.code.value if self._failure else "compensation"

    def _release(self) -> ReleaseInput:
        # Read at compensation time: after the pivot, units already taken go back on the shelf.
        assert self._input is not None
        return ReleaseInput(
            checkout_id=self._input.checkout_id, reason=self._reason(), restock=self._captured
        )

    def _expired(self, input: CheckoutInput) -> CheckoutStopped:
        return CheckoutStopped(
            CheckoutStatus.EXPIRED,
            FailureCode.PAYMENT_TIMEOUT,
            f"no payment confirmation within {input.payment_timeout_s} s",
        )

    def _check_cancel(self) -> None:
        if self._cancel_requested and not self._captured:
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
            workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(status.value)])

    async def _enter(self, *steps: StepName) -> None:
        """Mark `steps` started (the previous one completed) in the search attributes and the DB."""
        moved: dict[StepName, StepStatus] = {}
        if self._step not in steps:
            moved[self._step] = StepStatus.COMPLETED
            self._observe_step_end()
        for step in steps:
            moved[step] = StepStatus.STARTED
        self._step = steps[-1]
        workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        await self._record(moved)

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
        self, steps: dict[StepName, StepStatus], error_code: str | None = None
    ) -> None:
        assert self._input is not None
        await self._local(
            record.RECORD_PROGRESS,
            record.ProgressInput(
                checkout_id=self._input.checkout_id,
                steps={name.value: status.value for name, status in steps.items()},
                error_code=error_code,
                body=self.status(),
            ),
        )

    async def _unwind(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        """Record the failure, run every compensation, and end in `status`."""
        failed_step = self._step
        self._failure = Failure(code=code, message=message)
        self._step = StepName.COMPENSATING
        workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        await self._record(
            {failed_step: StepStatus.FAILED, StepName.COMPENSATING: StepStatus.STARTED},
            error_code=code.value,
        )
        await self._saga.compensate()
        self._status = status
        if self._payment is not None and self._captured:
            self._payment = PaymentSummary(status=PaymentStatus.REFUNDED)
        workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(status.value)])
        await self._record({StepName.COMPENSATING: StepStatus.COMPLETED}, error_code=code.value)

    async def _call(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT:
        """Run a domain activity with its options from `STEPS`."""
        options = STEPS[activity.name]
        result: ResultT = await workflow.execute_activity(
            activity.name,
            arg,
            task_queue=options.queue.value,
            start_to_close_timeout=options.timeout,
            retry_policy=options.retry,
            result_type=activity.result,
        )
        return result

    async def _local(self, activity: ActivityName[InputT, ResultT], arg: InputT) -> None:
        await workflow.execute_local_activity(
            activity.name, arg, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=FORWARD
        )
