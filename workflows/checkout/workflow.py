"""CheckoutWorkflow: cart to paid, reserved, shippable order, or nothing held and nobody charged.

Orchestration only: no I/O here, and no activity implementation is imported: activities are
called by name (`activities.<domain>.contract`) with the options of `steps.STEPS`. Every step runs
on its domain's task queue, and its compensation is registered before it runs. Beside it:
`payment` (running steps; the payment's steps and provider events), `cancel` (the one cancel
path), `operator` (waiting at needs_attention), `progress` (what buyers and operators see of the
run: its record, search attributes and current details).

The pivot is the capture (or, for a zero total, the decision that no payment is needed): before
it, any failure, a buyer's cancel or an expiry undoes everything; from it on, the buyer's cancel is
refused (409), the remaining steps are retried forward, and a step that fails for good, or an
operator's cancel, refunds the payment and cancels the order. A checkout always ends: when a
compensation fails for good, it waits at step `needs_attention` until an operator retries it or
records that it was settled by hand. The run itself never fails. A provider event reaching the
run at any point is acted on: re-read while the payment is awaited, settled otherwise.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import cast

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cart import contract as cart
    from activities.checkout import contract as record
    from activities.coupons import contract as coupons
    from activities.inventory import contract as inventory
    from activities.orders import contract as orders
    from activities.products import contract as products
    from activities.shared import MoneyValue, OrderRef, ReleaseInput
    from activities.shipping import contract as shipping
    from kit.money import Money
    from workflows.checkout.cancel import Canceller, CancelState
    from workflows.checkout.contract import (
        FINAL,
        PAYMENT_NOT_REQUIRED,
        WORKFLOW_TYPE,
        CheckoutStatus,
        FailureCode,
        PaymentStatus,
        StepName,
        StepStatus,
    )
    from workflows.checkout.models import (
        CheckoutInput,
        CheckoutStatusBody,
        Failure,
        MoneyOutcome,
        OperatorCancelResult,
        OrderSummary,
        PaymentEvent,
        PaymentSummary,
    )
    from workflows.checkout.operator import OperatorDesk
    from workflows.checkout.payment import PaymentSteps
    from workflows.checkout.pricing import PricingSteps
    from workflows.checkout.progress import Progress, describe, write_record
    from workflows.checkout.steps import (
        RESERVATION_MARGIN,
        CheckoutStopped,
        failure_code,
        gather_all,
    )
    from workflows.saga import Saga

UNWINDING = frozenset({StepName.COMPENSATING, StepName.NEEDS_ATTENTION})
# Clients waiting at once for a checkout to leave `processing` (`wait_settled`): below Temporal's
# limit of updates in flight per run (10), so that an operator's requests always find room.
MAX_WAITERS = 6
# Why `wait_settled` is refused (the caller then answers from the checkout database).
NOTHING_TO_WAIT_FOR = "nothing_to_wait_for"


def _refused(code: FailureCode, message: str) -> ApplicationError:
    """An update refused by its validator: kept out of the history, answered with `code`."""
    return ApplicationError(message, type=code.value, non_retryable=True)


@workflow.defn(name=WORKFLOW_TYPE)
class CheckoutWorkflow(PaymentSteps, PricingSteps, OperatorDesk):
    """One checkout, id `checkout-<checkout_id>`, on task queue `checkout`."""

    @workflow.init
    def __init__(self, input: CheckoutInput) -> None:
        super().__init__()
        self._input = input
        self._status = CheckoutStatus.PROCESSING
        self._step = StepName.LOCK_CART
        self._order: OrderSummary | None = None
        self._payment: PaymentSummary | None = None
        self._failure: Failure | None = None
        self._seen_events: set[str] = set()
        self._unhandled_events: list[PaymentEvent] = []  # received, not yet read
        self._foreign_events: list[PaymentEvent] = []  # about another intent: settled at the end
        self._cancel = CancelState()
        self._intent_id: str | None = None
        self._saga = Saga()
        self._waiting_for: str | None = None  # what the run waits for, in the current details
        self._shipment_dispatched = False
        self._money: MoneyOutcome | None = None  # what the undo did to the payment
        self._progress = Progress(self.status, self._details)
        self._waiters = 0  # clients in `wait_settled`
        self._whole_price = False
        self._price = None

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
        self._cancel.ask(Canceller.BUYER)

    @workflow.update(name="request_cancel")
    def request_cancel(self) -> bool:
        """The buyer's cancel: accepted only when it will be honoured (see the validator)."""
        return self._cancel.ask(Canceller.BUYER)

    @request_cancel.validator
    def _may_cancel(self) -> None:
        if self._ended():
            raise _refused(FailureCode.CHECKOUT_ENDED, "the checkout has ended")
        if self._cancel.pivot:  # set before the capture is scheduled
            raise _refused(FailureCode.ALREADY_CAPTURED, "the payment is being captured")

    @workflow.update(name="operator_cancel")
    async def operator_cancel(self) -> OperatorCancelResult:
        """An operator's cancel, honoured at any step; answered once the payment's compensation
        has run, with what it did to the money."""
        self._cancel.ask(Canceller.OPERATOR)
        await workflow.wait_condition(lambda: self._money is not None)
        assert self._money is not None
        return OperatorCancelResult(status=self._status.value, money=self._money)

    @operator_cancel.validator
    def _may_force_cancel(self) -> None:
        if self._ended():
            raise _refused(FailureCode.CHECKOUT_ENDED, "the checkout has ended")

    @workflow.update(name="wait_settled")
    async def wait_settled(self) -> CheckoutStatusBody:
        """A client waiting for the status to leave `processing`: answered with the status body
        as the checkout database records it once it does (the caller bounds the wait).

        Two events in the history (accepted, completed) and no timer: a client that stops
        waiting leaves the update to complete when the status moves."""
        self._waiters += 1
        try:
            await workflow.wait_condition(self._progress.settled)
        finally:
            self._waiters -= 1
        assert self._progress.recorded is not None
        return self._progress.recorded

    @wait_settled.validator
    def _may_wait(self) -> None:
        # Refused (and kept out of the history) when there is nothing a wait would bring soon:
        # the status is recorded already, or only an operator moves the checkout on.
        if self._progress.settled() or self._step == StepName.NEEDS_ATTENTION:
            raise ApplicationError("the status is settled", type=NOTHING_TO_WAIT_FOR)
        if self._waiters >= MAX_WAITERS:
            raise ApplicationError("enough clients wait already", type=NOTHING_TO_WAIT_FOR)

    @workflow.query(name="status")
    def status(self) -> CheckoutStatusBody:
        """The contract's checkout body."""
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
        return self._cancel.captured

    def _ended(self) -> bool:
        return self._status in FINAL or self._step in UNWINDING

    def _details(self) -> str:
        return describe(self.status(), self._waiting_for, self._attention)

    # -- the saga --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CheckoutInput) -> CheckoutStatusBody:
        """Drive the checkout to completed, failed, cancelled or expired.

        A cancellation of the run (the web UI) is an operator's cancel: the checkout unwinds,
        refunding if captured, and the run completes with the `cancelled` body."""
        workflow.metric_meter().create_counter("checkouts_started", "checkouts started").add(1)
        self._progress.show_start(str(input.user_id))
        checkout = asyncio.ensure_future(self._checkout(input))
        while True:
            try:
                return await asyncio.shield(checkout)
            except asyncio.CancelledError:
                if checkout.done():
                    raise
                workflow.logger.warning("checkout.run_cancelled")
                self._cancel.ask(Canceller.OPERATOR)

    async def _checkout(self, input: CheckoutInput) -> CheckoutStatusBody:
        opened = await write_record(
            record.OPEN_SESSION,
            record.OpenSessionInput(
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                cart_id=input.cart_id,
                idempotency_key=input.idempotency_key,
                request_hash=input.request_hash,
            ),
        )
        if opened.ended is not None:
            return self._already_ended(opened.ended)
        try:
            await self._forward(input)
        except CheckoutStopped as stop:
            await self._unwind(stop.status, stop.code, stop.message)
        except ActivityError as error:
            if self._cancel.honoured:
                # An accepted cancel is honoured even when a sibling step failed meanwhile.
                await self._unwind(CheckoutStatus.CANCELLED, FailureCode.CANCELLED, "cancelled")
            else:
                code, message = failure_code(error)
                await self._unwind(CheckoutStatus.FAILED, code, message)
        await self._settle_events()
        self._money = self._money or MoneyOutcome.NOTHING_TO_REFUND
        ended = self._failure.code.value if self._failure else "none"
        # Waiting clients are answered before the run ends (no event when none waits).
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.metric_meter().create_counter(
            "checkouts_ended", "checkouts ended, by status and failure code"
        ).with_additional_attributes({"status": self._status.value, "code": ended}).add(1)
        return self.status()

    def _already_ended(self, ended: CheckoutStatusBody) -> CheckoutStatusBody:
        """Never run an ended checkout again (a run started after its history was deleted)."""
        workflow.logger.warning("checkout.already_ended", extra={"status": ended.status})
        self._status, self._step = CheckoutStatus(ended.status), StepName(ended.step)
        self._order, self._payment, self._failure = ended.order, ended.payment, ended.failure
        self._progress.show_ended(ended)
        self._money = MoneyOutcome.NOTHING_TO_REFUND  # this run moved no money
        return ended

    async def _forward(self, input: CheckoutInput) -> None:
        """The stages in order; each raises to stop the checkout."""
        self._decide_whole_price(input)
        snapshot = await self._lock_cart(input)
        discount = await self._reserve(input, snapshot)
        order = await self._create_order(input, snapshot, discount)
        if order.total.amount == 0:
            # Nothing to pay (a 100 % coupon, a free product): no payment is taken.
            self._cancel.pivot = True
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
                checkout_id=input.checkout_id,
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
        price = self._price = await self._whole(input, snapshot, discount)
        # Read at compensation time: the failure and whether money came back are known then.
        self._saga.add(
            "cancel_order",
            lambda: self._call(
                orders.CANCEL,
                orders.CancelOrderInput(
                    checkout_id=input.checkout_id,
                    reason=self._reason(),
                    refunded=self._cancel.captured,
                ),
            ),
        )
        order = await self._step_call(orders.CREATE, self._order_input(input, snapshot, price))
        self._order = OrderSummary(
            id=order.order_id,
            order_number=order.order_number,
            total_amount=order.total.amount,
            currency=order.total.currency,
        )
        self._check_cancel()
        return order

    async def _settle(self, order_ref: OrderRef) -> None:
        """The pivot turns reservations into sales and the order into a paid one."""
        # Without a coupon code no coupon was reserved: there is nothing to confirm.
        confirm = bool(self._input.coupon_code)
        coupon = [StepName.CONFIRM_COUPON] if confirm else []
        await self._enter(StepName.COMMIT_INVENTORY, *coupon, StepName.CONFIRM_ORDER)
        reason = "payment_captured" if self._cancel.captured else "no_payment_required"
        await gather_all(
            *self._commit_tax(order_ref),
            self._step_call(inventory.COMMIT, order_ref),
            *([self._step_call(coupons.CONFIRM, order_ref)] if confirm else []),
            self._step_call(
                orders.MARK_PAID,
                orders.OrderTransitionInput(checkout_id=order_ref.checkout_id, reason=reason),
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
        self._shipment_dispatched = True
        await self._step_call(
            shipping.CREATE,
            shipping.CreateShipmentInput(
                checkout_id=input.checkout_id,
                order_id=order_ref.order_id,
                ship_to=input.shipping_address,
                shipping_rate_id=input.shipping_rate_id if self._whole_price else None,
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
        self._check_cancel()
        self._status = CheckoutStatus.COMPLETED
        await self._progress.publish({StepName.COMPLETE: StepStatus.COMPLETED})

    # -- when it does not go forward --------------------------------------------------------------

    async def _unwind(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        """Record the failure, run every compensation, and end in `status`.

        A compensation that fails for good parks the checkout at `needs_attention` until an
        operator retries it (after mending the cause) or resolves it (settled by hand).
        """
        failed_step = self._step
        self._failure = Failure(code=code, message=message)
        self._step, self._waiting_for = StepName.COMPENSATING, None
        if self._status == CheckoutStatus.REQUIRES_ACTION:
            # Nothing is asked of the buyer any more: no live 3-D Secure link while undoing.
            self._status, self._payment = CheckoutStatus.PROCESSING, None
        moved = {failed_step: StepStatus.FAILED, StepName.COMPENSATING: StepStatus.STARTED}
        await self._progress.publish(moved, error_code=code.value)
        failures = await self._saga.compensate()
        if self._money is None:
            voided = "void_payment" in self._saga.ran or "void_payment" not in self._saga.names
            self._money = MoneyOutcome.NOTHING_TO_REFUND if voided else MoneyOutcome.NEEDS_ATTENTION
        while failures and await self._wait_for_operator(failures, code, self._settle_events):
            failures = await self._saga.compensate()
        await self._settle_events()
        self._status, self._step = status, StepName.COMPENSATING
        if self._payment is not None and self._cancel.captured:
            self._payment = PaymentSummary(status=PaymentStatus.REFUNDED)
        elif self._payment is not None and (
            self._payment.status == PaymentStatus.AUTHORIZED
            or (
                self._payment.status == PaymentStatus.PROCESSING
                and self._money == MoneyOutcome.VOIDED
            )
        ):
            # The compensation released the authorization (a declined capture, a later step), or
            # cancelled an intent the provider was still deciding: nothing is held any more.
            self._payment = PaymentSummary(status=PaymentStatus.VOIDED)
        await self._progress.publish(
            {self._step: StepStatus.COMPLETED}, error_code=code.value, note=self._note
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _cart_ref(self) -> cart.CartRef:
        return cart.CartRef(checkout_id=self._input.checkout_id, cart_id=self._input.cart_id)

    def _reason(self) -> str:
        return self._failure.code.value if self._failure else "compensation"

    def _release(self) -> ReleaseInput:
        # Read at compensation time: from the pivot on, units already taken go back on the shelf.
        return ReleaseInput(
            checkout_id=self._input.checkout_id,
            reason=self._reason(),
            restock=self._cancel.captured or self._cancel.pivot,
        )
