"""CheckoutWorkflow: cart to paid, reserved, shippable order, or nothing held and nobody charged.

Orchestration only: no I/O here. Every step is an activity on its domain's task queue; its
compensation is registered before it runs. Capture is the pivot: before it, any failure, a
cancel or an expiry undoes everything; after it, the remaining steps are retried forward, and a
step that fails for good refunds the payment and cancels the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from temporalio import workflow
from temporalio.activity import _Definition  # the one way to read an activity's registered name
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cart import CartActivities
    from activities.checkout import CheckoutActivities
    from activities.coupons import CouponsActivities
    from activities.inventory import InventoryActivities
    from activities.orders import OrdersActivities
    from activities.payments import PaymentsActivities
    from activities.products import ProductsActivities
    from activities.shipping import ShippingActivities
    from domains.checkout.models import CheckoutStatus, StepName, StepStatus
    from kit.money import Money
    from workflows.models import (
        AuthorizeInput,
        CancelOrderInput,
        CartRef,
        CartSnapshot,
        CheckoutInput,
        CheckoutRef,
        CheckoutStatusBody,
        CouponReservation,
        CreateOrderInput,
        CreateShipmentInput,
        Failure,
        FailureCode,
        InventoryLine,
        LockCartInput,
        MoneyValue,
        OpenSessionInput,
        OrderInfo,
        OrderLine,
        OrderRef,
        OrderSummary,
        OrderTransitionInput,
        PaymentEvent,
        PaymentResult,
        PaymentSummary,
        PriceCartInput,
        ProgressInput,
        ReleaseInput,
        ReserveCouponInput,
        ReserveInventoryInput,
    )
    from workflows.saga import Saga

T = TypeVar("T")

TASK_QUEUE = "checkout"

CHECKOUT_STATUS = SearchAttributeKey.for_keyword("CheckoutStatus")
CHECKOUT_STEP = SearchAttributeKey.for_keyword("CheckoutStep")
ORDER_NUMBER = SearchAttributeKey.for_keyword("OrderNumber")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")

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

WAITING_PAYMENT = frozenset({"requires_action", "processing"})


class CheckoutStopped(Exception):
    """Ends the forward path: the checkout failed, was cancelled or expired. Never leaves run()."""

    def __init__(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _failure_code(error: BaseException) -> tuple[FailureCode, str]:
    """The contract's failure code carried by an activity failure (internal_error otherwise)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            try:
                return FailureCode(cause.type), cause.message
            except ValueError:
                pass
        cause = cause.__cause__
    return FailureCode.INTERNAL_ERROR, str(error)


@workflow.defn(name="CheckoutWorkflow")
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

    # -- signals and queries -------------------------------------------------------------------

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
            CheckoutActivities.open_session,
            OpenSessionInput(
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
            code, message = _failure_code(error)
            await self._unwind(CheckoutStatus.FAILED, code, message)
        except asyncio.CancelledError:
            # Temporal cancellation (an operator): undo everything, refunding if captured.
            await self._unwind(CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "cancelled")
            self._count_end()
            raise
        self._count_end()
        return self.status()

    def _count_end(self) -> None:
        code = self._failure.code.value if self._failure else "none"
        workflow.metric_meter().create_counter(
            "checkouts_ended", "checkouts ended, by status and failure code"
        ).with_additional_attributes({"status": self._status.value, "code": code}).add(1)

    async def _forward(self, input: CheckoutInput) -> None:
        checkout_id = input.checkout_id
        cart_ref = CartRef(checkout_id=checkout_id, cart_id=input.cart_id)

        await self._enter(StepName.LOCK_CART)
        self._saga.add("unlock_cart", lambda: self._undo(CartActivities.unlock_cart, cart_ref))
        cart: CartSnapshot = await self._call(
            CartActivities.lock_cart,
            LockCartInput(checkout_id=checkout_id, cart_id=input.cart_id, user_id=input.user_id),
        )
        self._check_cancel()

        # Price check, coupon and stock do not depend on each other: one concurrent stage.
        subtotal = cart.subtotal()
        now = workflow.now()
        concurrent: list[Awaitable[Any]] = [
            self._call(
                ProductsActivities.price_cart,
                PriceCartInput(currency=cart.currency, lines=cart.lines, at=now),
            )
        ]
        stage = [StepName.PRICE_CART]
        if input.coupon_code:
            stage.append(StepName.RESERVE_COUPON)
            self._saga.add(
                "release_coupon",
                lambda: self._undo(CouponsActivities.release_coupon, self._release(checkout_id)),
            )
            concurrent.append(
                self._call(
                    CouponsActivities.reserve_coupon,
                    ReserveCouponInput(
                        checkout_id=checkout_id,
                        user_id=input.user_id,
                        code=input.coupon_code,
                        subtotal=MoneyValue.of(subtotal),
                        at=now,
                    ),
                )
            )
        stage.append(StepName.RESERVE_INVENTORY)
        self._saga.add(
            "release_inventory",
            lambda: self._undo(InventoryActivities.release_inventory, self._release(checkout_id)),
        )
        concurrent.append(
            self._call(
                InventoryActivities.reserve_inventory,
                ReserveInventoryInput(
                    checkout_id=checkout_id,
                    lines=[
                        InventoryLine(
                            product_id=line.product_id,
                            variant_id=line.variant_id,
                            quantity=line.quantity,
                        )
                        for line in cart.lines
                    ],
                    expires_at=now
                    + timedelta(seconds=input.payment_timeout_s)
                    + RESERVATION_MARGIN,
                ),
            )
        )
        await self._enter(*stage)
        # Wait for every branch, also when one fails: compensating while a sibling is still
        # reserving would release before it reserves.
        results = await asyncio.gather(*concurrent, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        discount = Money.zero(cart.currency)
        if input.coupon_code:
            coupon = cast(CouponReservation, results[1])
            discount = coupon.discount.money()
        self._check_cancel()

        await self._enter(StepName.CREATE_ORDER)
        self._saga.add(
            "cancel_order",
            lambda: self._undo(
                OrdersActivities.cancel_order,
                CancelOrderInput(
                    checkout_id=checkout_id,
                    reason=self._failure.code.value if self._failure else "compensation",
                    refunded=self._captured,
                ),
            ),
        )
        total = subtotal - discount
        order: OrderInfo = await self._call(
            OrdersActivities.create_order,
            CreateOrderInput(
                checkout_id=checkout_id,
                user_id=input.user_id,
                currency=cart.currency,
                lines=[
                    OrderLine(
                        product_id=line.product_id,
                        variant_id=line.variant_id,
                        sku=line.sku,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                    )
                    for line in cart.lines
                ],
                subtotal=MoneyValue.of(subtotal),
                discount=MoneyValue.of(discount),
                total=MoneyValue.of(total),
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

        await self._enter(StepName.AUTHORIZE_PAYMENT)
        authorize = AuthorizeInput(
            checkout_id=checkout_id,
            order_id=order.order_id,
            amount=MoneyValue.of(total),
            provider=input.payment_provider,
            token=input.payment_token,
        )
        self._saga.add(
            "void_payment", lambda: self._undo(PaymentsActivities.void_payment, authorize)
        )
        payment: PaymentResult = await self._call(
            PaymentsActivities.authorize_payment, authorize, start_to_close=PROVIDER_STEP_TIMEOUT
        )
        self._take_payment(payment)
        if payment.status in WAITING_PAYMENT:
            payment = await self._await_payment(input)
        if payment.status != "authorized":
            raise CheckoutStopped(
                CheckoutStatus.FAILED,
                FailureCode.PAYMENT_DECLINED,
                f"the payment was declined ({payment.error_code or payment.status})",
            )
        self._check_cancel()

        await self._enter(StepName.CAPTURE_PAYMENT)
        payment = await self._call(
            PaymentsActivities.capture_payment,
            CheckoutRef(checkout_id=checkout_id),
            start_to_close=PROVIDER_STEP_TIMEOUT,
        )
        # The pivot: money moved. From here on, only forward (or a refund if a step fails for good).
        self._captured = True
        self._cancel_requested = False
        self._take_payment(payment)

        order_ref = OrderRef(checkout_id=checkout_id, order_id=order.order_id)
        await self._enter(
            StepName.COMMIT_INVENTORY, StepName.CONFIRM_COUPON, StepName.CONFIRM_ORDER
        )
        settled = await asyncio.gather(
            self._call(InventoryActivities.commit_inventory, order_ref),
            self._call(CouponsActivities.confirm_coupon, order_ref),
            self._call(
                OrdersActivities.mark_paid,
                OrderTransitionInput(checkout_id=checkout_id, reason="payment_captured"),
            ),
            return_exceptions=True,
        )
        for result in settled:
            if isinstance(result, BaseException):
                raise result

        await self._enter(StepName.CREATE_SHIPMENT)
        self._saga.add(
            "cancel_shipment", lambda: self._undo(ShippingActivities.cancel_shipment, order_ref)
        )
        await self._call(
            ShippingActivities.create_shipment,
            CreateShipmentInput(
                checkout_id=checkout_id, order_id=order.order_id, ship_to=input.shipping_address
            ),
            start_to_close=PROVIDER_STEP_TIMEOUT,
        )

        await self._enter(StepName.COMPLETE)
        finished = await asyncio.gather(
            self._call(CartActivities.mark_converted, cart_ref),
            self._call(
                OrdersActivities.mark_fulfilling,
                OrderTransitionInput(checkout_id=checkout_id, reason="shipment_created"),
            ),
            return_exceptions=True,
        )
        for result in finished:
            if isinstance(result, BaseException):
                raise result
        self._status = CheckoutStatus.COMPLETED
        await self._record({StepName.COMPLETE: StepStatus.COMPLETED})

    async def _await_payment(self, input: CheckoutInput) -> PaymentResult:
        """Wait for the provider to settle the authorization, bounded by the payment window."""
        await self._enter(StepName.AWAITING_PAYMENT)
        deadline = workflow.now() + timedelta(seconds=input.payment_timeout_s)
        checkout = CheckoutRef(checkout_id=input.checkout_id)
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
            payment: PaymentResult = await self._call(
                PaymentsActivities.refresh_payment, checkout, start_to_close=PROVIDER_STEP_TIMEOUT
            )
            self._take_payment(payment)
            if payment.status not in WAITING_PAYMENT:
                return payment

    # -- helpers ---------------------------------------------------------------------------------

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

    def _release(self, checkout_id: Any) -> ReleaseInput:
        # Read at compensation time: after the pivot, units already taken go back on the shelf.
        reason = self._failure.code.value if self._failure else "compensation"
        return ReleaseInput(checkout_id=checkout_id, reason=reason, restock=self._captured)

    def _take_payment(self, payment: PaymentResult) -> None:
        self._intent_id = payment.intent_id or self._intent_id
        self._payment = PaymentSummary(status=payment.status, next_action=payment.next_action)
        waiting_for_buyer = payment.status == "requires_action"
        status = CheckoutStatus.REQUIRES_ACTION if waiting_for_buyer else CheckoutStatus.PROCESSING
        if status != self._status:
            self._status = status
            workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(status.value)])

    async def _enter(self, *steps: StepName) -> None:
        """Mark `steps` started (the previous one completed) in the search attributes and the DB."""
        moved: dict[StepName, StepStatus] = {}
        if self._step not in steps:
            moved[self._step] = StepStatus.COMPLETED
            now = workflow.now()
            if self._step_started is not None:
                workflow.metric_meter().create_histogram_timedelta(
                    "checkout_step_duration", "time spent in a checkout step"
                ).with_additional_attributes({"step": self._step.value}).record(
                    now - self._step_started
                )
            self._step_started = now
        for step in steps:
            moved[step] = StepStatus.STARTED
        self._step = steps[-1]
        workflow.upsert_search_attributes([CHECKOUT_STEP.value_set(self._step.value)])
        await self._record(moved)

    async def _record(
        self, steps: dict[StepName, StepStatus], error_code: str | None = None
    ) -> None:
        assert self._input is not None
        await self._local(
            CheckoutActivities.record_progress,
            ProgressInput(
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
            self._payment = PaymentSummary(status="refunded")
        workflow.upsert_search_attributes([CHECKOUT_STATUS.value_set(status.value)])
        await self._record({StepName.COMPENSATING: StepStatus.COMPLETED}, error_code=code.value)

    async def _call(
        self,
        activity: Callable[[Any, Any], Awaitable[T]],
        arg: Any,
        *,
        start_to_close: timedelta = DB_STEP_TIMEOUT,
    ) -> T:
        """Run a domain activity on its domain's task queue (`cart.lock` -> queue `cart`)."""
        name = _Definition.must_from_callable(activity).name or ""
        return await workflow.execute_activity_method(
            activity,
            arg,
            task_queue=name.split(".", 1)[0],
            start_to_close_timeout=start_to_close,
            retry_policy=FORWARD,
        )

    async def _undo(self, activity: Callable[[Any, Any], Awaitable[Any]], arg: Any) -> None:
        slow = activity is PaymentsActivities.void_payment
        await self._call(
            activity, arg, start_to_close=PROVIDER_STEP_TIMEOUT if slow else DB_STEP_TIMEOUT
        )

    async def _local(self, activity: Callable[[Any, Any], Awaitable[Any]], arg: Any) -> None:
        await workflow.execute_local_activity_method(
            activity,
            arg,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=FORWARD,
        )
