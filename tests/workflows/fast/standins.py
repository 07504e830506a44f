"""Stand-in activities: every activity the checkout can call, acting on an in-memory `World`.

The list is derived, not written out: every `ActivityName` in `activities/<queue>/contract.py`
for every task queue gets a stand-in registered under its name, typed with the contract's input
and result models, on the queue the workflow calls it on (`STEPS`, else its domain's queue). A
domain activity without a behaviour in `BEHAVIOURS` stops the tier at start ("no stand-in for
X"); the checkout's own record activities are generic (they accept any payload, keep it, and
answer the result type's empty value), so a new record activity or a record moved from a local
to a regular activity needs no change here. A call of a name nobody registered lands in a
dynamic activity that records it and fails for good: `Standins.unknown` says which.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from activities.cart import contract as cart
from activities.coupons import contract as coupons
from activities.inventory import contract as inventory
from activities.orders import contract as orders
from activities.payments import contract as payments
from activities.products import contract as products
from activities.shared import (
    ActivityName,
    CheckoutRef,
    Line,
    MoneyValue,
    NextAction,
    ReleaseInput,
)
from activities.shipping import contract as shipping
from kit.money import Money
from tests.workflows.fast.world import LIVE_INTENT, Fail, Hang, Transient, World
from workflows.checkout.contract import FailureCode, TaskQueue, checkout_id_of
from workflows.checkout.steps import STEPS
from workflows.returns.models import return_id_of

# How often a held stand-in heartbeats (the worker sends heartbeats this often, so a
# cancellation reaches it at once).
BEAT = timedelta(milliseconds=50)
RECORDS = TaskQueue.CHECKOUT.value
CURRENCY = "EUR"

# What an activity does to the world; its return value is the activity's result.
Effect = Callable[[World, Any], Any]


def contract_activities() -> dict[str, ActivityName[Any, Any]]:
    """Every activity in the contracts of the task queues' domains, by name."""
    found: dict[str, ActivityName[Any, Any]] = {}
    for queue in TaskQueue:
        module = importlib.import_module(f"activities.{queue.value}.contract")
        for value in vars(module).values():
            if isinstance(value, ActivityName):
                found[value.name] = value
    return found


def queue_of(name: str) -> str:
    """The task queue the workflow calls an activity on."""
    options = STEPS.get(name)
    return options.queue.value if options else name.split(".", 1)[0]


# -- the domains, as the fake world keeps them ------------------------------------------------


def _lock(world: World, arg: cart.LockCartInput) -> cart.CartSnapshot:
    world.cart = "locked" if world.cart == "active" else world.cart
    return cart.CartSnapshot(cart_id=arg.cart_id, currency=CURRENCY, lines=[_line(world)])


def _line(world: World) -> Line:
    product = uuid.uuid5(world.checkout_id, "product")
    return Line(
        product_id=product,
        variant_id=uuid.uuid5(product, "variant"),
        sku="FAST-1",
        quantity=world.quantity,
        unit_price=world.unit_price,
    )


def _unlock(world: World, arg: cart.CartRef) -> bool:
    # A converted cart becomes editable again too (the order it became is being undone).
    if world.cart == "active":
        return False
    world.cart = "active"
    return True


def _convert(world: World, arg: cart.CartRef) -> None:
    world.cart = "converted"


def _price(world: World, arg: products.PriceCartInput) -> products.PricedCart:
    total = sum((line.unit_price * line.quantity for line in arg.lines), Decimal(0))
    return products.PricedCart(subtotal=MoneyValue(amount=total, currency=arg.currency))


def _reserve_coupon(world: World, arg: coupons.ReserveCouponInput) -> coupons.CouponReservation:
    world.coupon = "held" if world.coupon is None else world.coupon
    off = arg.subtotal.money().percentage(world.discount_percent)
    return coupons.CouponReservation(
        redemption_id=uuid.uuid5(world.checkout_id, "coupon"),
        code=arg.code.upper(),
        discount=MoneyValue.of(off),
    )


def _release_coupon(world: World, arg: ReleaseInput) -> bool:
    # A confirmed redemption is given back too (the order it paid for is being undone).
    if world.coupon not in ("held", "confirmed"):
        return False
    world.coupon = "released"
    return True


def _confirm_coupon(world: World, arg: Any) -> bool:
    if world.coupon == "released":
        raise ApplicationError(
            "the redemption was released", type=FailureCode.COUPON_INVALID.value, non_retryable=True
        )
    world.coupon = "confirmed" if world.coupon == "held" else world.coupon
    return world.coupon == "confirmed"


def _reserve_stock(
    world: World, arg: inventory.ReserveInventoryInput
) -> inventory.InventoryReservation:
    world.stock = "held" if world.stock is None else world.stock
    return inventory.InventoryReservation(reservation_ids=[uuid.uuid5(world.checkout_id, "stock")])


def _release_stock(world: World, arg: ReleaseInput) -> int:
    # Units already taken go back on the shelf only when the caller says so.
    if world.stock == "held" or (world.stock == "committed" and arg.restock):
        world.stock = "released"
        return 1
    return 0


def _commit_stock(world: World, arg: Any) -> int:
    world.stock = "committed" if world.stock in ("held", "committed") else world.stock
    return 1 if world.stock == "committed" else 0


def _order_info(world: World) -> orders.OrderInfo:
    assert world.order is not None
    assert world.total is not None
    return orders.OrderInfo(
        order_id=uuid.uuid5(world.checkout_id, "order"),
        order_number=f"ORD-{world.checkout_id.hex[:8].upper()}",
        status=world.order,
        total=MoneyValue(amount=world.total, currency=CURRENCY),
    )


def _create_order(world: World, arg: orders.CreateOrderInput) -> orders.OrderInfo:
    if world.order is None:
        world.order, world.total = "pending_payment", arg.total.amount
    return _order_info(world)


def _cancel_order(world: World, arg: orders.CancelOrderInput) -> bool:
    if world.order in (None, "cancelled", "refunded"):
        return False
    # Only a paid order can become refunded; an unpaid one is cancelled whatever the caller says.
    paid = world.order in ("paid", "fulfilling")
    world.order = "refunded" if arg.refunded and paid else "cancelled"
    return True


def _mark(status: str, before: tuple[str, ...]) -> Effect:
    def mark(world: World, arg: orders.OrderTransitionInput) -> orders.OrderInfo:
        if world.order in before:
            world.order = status
        if world.order != status:
            raise ApplicationError(
                f"order is {world.order}",
                type=FailureCode.INVALID_ORDER_TRANSITION.value,
                non_retryable=True,
            )
        return _order_info(world)

    return mark


# -- the provider and the carrier ---------------------------------------------------------------

# The fake intent's status, as a PaymentResult reports it.
_PAYMENT_STATUS = {
    "requires_action": "requires_action",
    "processing": "processing",
    "requires_capture": "authorized",
    "captured": "captured",
    "canceled": "voided",
    "failed": "failed",
}


def _payment(world: World) -> payments.PaymentResult:
    assert world.intent is not None
    status = _PAYMENT_STATUS[world.intent]
    action = None
    if world.intent == "requires_action":
        action = NextAction(type="redirect_to_url", url=f"https://psp.test/3ds/{world.intent_id}")
    return payments.PaymentResult(
        status="refunded" if world.refunded else status,
        intent_id=world.intent_id,
        next_action=action,
        error_code="card_declined" if world.intent == "failed" else None,
        message="Your card was declined." if world.intent == "failed" else None,
    )


def _authorize(world: World, arg: payments.AuthorizeInput) -> payments.PaymentResult:
    if world.intent is None:  # a retry finds the intent of the first attempt
        world.intent = {"authorized": "requires_capture"}.get(world.payment, world.payment)
    return _payment(world)


def _confirm(world: World, arg: payments.ConfirmInput) -> payments.PaymentResult:
    """The same intent confirmed with another method: declined when its name says so, a 3-D
    Secure challenge for `...threeDSecure...`, else authorized. Once per attempt."""
    if len(world.confirmed) < arg.attempt:
        world.confirmed.append(arg.payment_method)
        if "Declined" in arg.payment_method:
            world.intent = "failed"
        elif "threeDSecure" in arg.payment_method:
            world.intent, world.approved = "requires_action", None
        else:
            world.intent = "requires_capture"
    return _payment(world)


def _refresh(world: World, arg: Any) -> payments.PaymentResult:
    if world.intent in ("requires_action", "processing") and world.approved is not None:
        world.intent = "requires_capture" if world.approved else "failed"
    return _payment(world)


def _capture(world: World, arg: Any) -> payments.PaymentResult:
    if world.intent == "requires_capture":
        assert world.total is not None
        world.intent, world.captured = "captured", world.total
    if world.intent != "captured":
        raise ApplicationError(
            f"nothing to capture ({world.intent})",
            type=FailureCode.PAYMENT_DECLINED.value,
            non_retryable=True,
        )
    return _payment(world)


def _give_back(world: World, *, refund: bool = True) -> payments.VoidResult:
    if world.intent in LIVE_INTENT:
        world.intent = "canceled"
        return payments.VoidResult(action="canceled")
    if world.intent == "captured" and refund and world.refunded < world.captured:
        world.refunded = world.captured
        return payments.VoidResult(
            action="refunded", refunded=MoneyValue(amount=world.refunded, currency=CURRENCY)
        )
    return payments.VoidResult(action="nothing")


def _void(world: World, arg: payments.AuthorizeInput) -> payments.VoidResult:
    if arg.cancel_declined and world.intent == "failed":
        world.intent = "canceled"  # nobody can confirm it later
        return payments.VoidResult(action="canceled")
    return _give_back(world)


def _settle_ended(world: World, arg: payments.SettleInput) -> payments.VoidResult:
    if arg.intent_id != world.intent_id:
        return payments.VoidResult(action="nothing")  # an intent this checkout never made
    return _give_back(world, refund=arg.refund_captured)


def _after_sale(world: World, arg: payments.AfterSaleInput) -> payments.AfterSaleResult:
    return payments.AfterSaleResult()  # no refund or dispute in the fake world: nothing moves


def _retry_refund(world: World, arg: payments.RetryRefundInput) -> payments.RetryRefundResult:
    # The checkout never retries refunds (operators do, through RefundRetryWorkflow).
    raise ApplicationError("no failed refund in the fake world", non_retryable=True)


def _request_refund(world: World, arg: payments.RefundRequestInput) -> payments.RefundRequestResult:
    """A refund asked for after the sale (a return's; the checkout never asks): recorded once per
    key."""
    world.refund_requests.setdefault(arg.key, arg.amount.amount)
    world.refund_requesters.setdefault(arg.key, (arg.purpose, arg.owner_id))
    return payments.RefundRequestResult(
        refund_id=uuid.uuid5(world.checkout_id, arg.key),
        order_id=arg.order_id,
        amount=arg.amount,
        status="pending",
    )


def _send_refund(world: World, arg: payments.SendRefundInput) -> payments.RefundRequestResult:
    """The provider settles the refund as the world's script says (else it succeeds)."""
    status = world.refund_outcomes.pop(0) if world.refund_outcomes else "succeeded"
    if status == "succeeded":
        world.refunded += sum(world.refund_requests.values(), Decimal(0)) - world.refunded
    return payments.RefundRequestResult(
        refund_id=arg.refund_id,
        order_id=world.checkout_id,
        amount=MoneyValue(amount=Decimal(0), currency=CURRENCY),
        status=status,
    )


def _move_return(world: World, arg: orders.MoveReturnInput) -> bool:
    if world.return_moves and world.return_moves[-1] == arg.to:
        return False
    world.return_moves.append(str(arg.to))
    return True


def _receive_return(world: World, arg: orders.ReceiveReturnInput) -> orders.ReceivedReturn:
    if "received" not in world.return_moves:
        world.return_moves.append("received")
        world.records.append(arg)
    first: orders.ReceiveReturnInput = next(
        r for r in world.records if isinstance(r, orders.ReceiveReturnInput)
    )
    return orders.ReceivedReturn(lines=first.lines)


def _restock(world: World, arg: inventory.RestockInput) -> int:
    added = 0
    for line in arg.lines:
        if line.order_item_id not in world.restocked:
            world.restocked[line.order_item_id] = line.quantity
            added += line.quantity
    return added


def _taxed(
    world: World, currency: str, lines: list[payments.LineTaxValue], shipping_tax: Decimal
) -> payments.TaxResultValue:
    total = shipping_tax + sum((line.tax.amount for line in lines), Decimal(0))
    untaxed = world.tax == "untaxed"
    return payments.TaxResultValue(
        status=world.tax or "untaxed",
        lines=lines,
        shipping_tax=MoneyValue(amount=shipping_tax, currency=currency),
        total_tax=MoneyValue(amount=total, currency=currency),
        calculation_id=None if untaxed else f"taxcalc_{world.checkout_id.hex[:16]}",
        transaction_id=f"tax_{world.checkout_id.hex[:16]}" if world.tax == "committed" else None,
        untaxed_reason="tax_unavailable" if untaxed else None,
    )


def _calculate_tax(world: World, arg: payments.CalculateTaxInput) -> payments.TaxResultValue:
    """The tax service at `world.tax_percent` on every line and the shipping (rounded half-up
    per line); down with TAX_ON_FAILURE=open (`tax_down_open`): zero tax, untaxed."""
    rate = Decimal(0) if world.tax_down_open else Decimal(world.tax_percent) / 100

    def tax(amount: MoneyValue) -> MoneyValue:
        return MoneyValue.of(Money.rounded(amount.amount * rate, arg.currency))

    lines = [
        payments.LineTaxValue(reference=line.reference, amount=line.amount, tax=tax(line.amount))
        for line in arg.lines
    ]
    if world.tax is None:
        world.tax = "untaxed" if world.tax_down_open else "calculated"
    shipping_tax = tax(arg.shipping).amount
    world.tax_total = shipping_tax + sum((line.tax.amount for line in lines), Decimal(0))
    return _taxed(world, arg.currency, lines, shipping_tax)


def _commit_tax(world: World, arg: CheckoutRef) -> payments.TaxResultValue:
    world.tax = "committed" if world.tax == "calculated" else world.tax
    return _taxed(world, CURRENCY, [], world.tax_total)


def _reverse_tax(world: World, arg: payments.ReverseTaxInput) -> payments.TaxReversalResult:
    if world.tax != "committed":
        return payments.TaxReversalResult(action="nothing")
    world.tax = "reversed"
    return payments.TaxReversalResult(
        action="reversed", tax_reversed=MoneyValue(amount=world.tax_total, currency=CURRENCY)
    )


def _ship(world: World, arg: shipping.CreateShipmentInput) -> shipping.ShipmentInfo:
    world.shipment = "booked" if world.shipment is None else world.shipment
    world.bought_rate = arg.shipping_rate_id
    return shipping.ShipmentInfo(
        shipment_id=uuid.uuid5(world.checkout_id, "shipment"),
        carrier="fake",
        tracking_number=f"TRK{world.checkout_id.hex[:10]}",
    )


def _cancel_shipment(world: World, arg: shipping.CancelShipmentInput) -> bool:
    if world.shipment != "booked":
        return False
    world.shipment = "cancelled"
    return True


def _return_label(world: World, arg: shipping.ReturnLabelInput) -> shipping.ReturnLabel:
    """A return's label (not called by the checkout)."""
    return shipping.ReturnLabel(
        carrier_shipment_id=f"shp_return_{arg.return_id.hex[:10]}",
        tracking_number=f"RET{arg.return_id.hex[:10]}",
        label_url=None,
        carrier="fake",
        service="Ground",
        amount=Decimal("5.00"),
        currency=CURRENCY,
    )


# Every domain activity's behaviour in the fake world (idempotent: a retry changes nothing more).
BEHAVIOURS: dict[str, Effect] = {
    cart.LOCK.name: _lock,
    cart.UNLOCK.name: _unlock,
    cart.CONVERT.name: _convert,
    products.PRICE_CART.name: _price,
    coupons.RESERVE.name: _reserve_coupon,
    coupons.RELEASE.name: _release_coupon,
    coupons.CONFIRM.name: _confirm_coupon,
    inventory.RESERVE.name: _reserve_stock,
    inventory.RELEASE.name: _release_stock,
    inventory.COMMIT.name: _commit_stock,
    inventory.RESTOCK.name: _restock,
    orders.CREATE.name: _create_order,
    orders.CANCEL.name: _cancel_order,
    orders.MARK_PAID.name: _mark("paid", ("pending_payment",)),
    orders.MARK_FULFILLING.name: _mark("fulfilling", ("paid",)),
    orders.MOVE_RETURN.name: _move_return,
    orders.RECEIVE_RETURN.name: _receive_return,
    payments.AUTHORIZE.name: _authorize,
    payments.CONFIRM.name: _confirm,
    payments.REFRESH.name: _refresh,
    payments.CAPTURE.name: _capture,
    payments.VOID.name: _void,
    payments.SETTLE_ENDED.name: _settle_ended,
    payments.AFTER_SALE.name: _after_sale,
    payments.RETRY_REFUND.name: _retry_refund,
    payments.REQUEST_REFUND.name: _request_refund,
    payments.SEND_REFUND.name: _send_refund,
    payments.CALCULATE_TAX.name: _calculate_tax,
    payments.COMMIT_TAX.name: _commit_tax,
    payments.REVERSE_TAX.name: _reverse_tax,
    shipping.CREATE.name: _ship,
    shipping.CANCEL.name: _cancel_shipment,
    # An order cancellation's claim (not called by the checkout): as the compensation.
    shipping.WITHDRAW.name: _cancel_shipment,
    shipping.RETURN_LABEL.name: _return_label,
}


def _record(world: World, arg: Any) -> None:
    world.records.append(arg)


def _empty(result: Any) -> Any:
    """The empty answer of a record activity: None, or its result model with every default."""
    if isinstance(result, type) and issubclass(result, BaseModel):
        return result.model_validate({})
    return None


# -- the registry ---------------------------------------------------------------------------------


class Standins:
    """The worlds of the session's checkouts and the stand-in activities acting on them."""

    def __init__(self) -> None:
        self.worlds: dict[uuid.UUID, World] = {}
        self.unknown: list[str] = []
        self.contract = contract_activities()
        missing = [
            name for name in self.contract if name not in BEHAVIOURS and queue_of(name) != RECORDS
        ]
        if missing:
            raise LookupError(f"no stand-in for {', '.join(sorted(missing))}")

    def world(self, **fields: Any) -> World:
        """A new checkout's world."""
        world = World(checkout_id=uuid.uuid4(), **fields)
        self.worlds[world.checkout_id] = world
        return world

    def placement(self) -> dict[str, str]:
        """The task queue of every stand-in, by activity name."""
        return {name: queue_of(name) for name in self.contract}

    def by_queue(self) -> dict[str, list[Callable[..., Any]]]:
        """The stand-ins to register, by task queue (each queue also gets the catch-all)."""
        queues: dict[str, list[Callable[..., Any]]] = {q.value: [] for q in TaskQueue}
        for name, queue in self.placement().items():
            queues.setdefault(queue, []).append(self._standin(self.contract[name]))
        for standins in queues.values():
            standins.append(self._unknown())
        return queues

    def _standin(self, contract: ActivityName[Any, Any]) -> Callable[..., Any]:
        name = contract.name
        behaviour = BEHAVIOURS.get(name, _record)

        async def standin(arg: Any) -> Any:
            world = self._world_of_caller(name)
            result = await _act(world, name, partial(behaviour, world, arg))
            return _empty(contract.result) if behaviour is _record else result

        # Typed like the contract: the SDK decodes the payload into the input model.
        standin.__annotations__ = {"arg": contract.input, "return": contract.result}
        standin.__name__ = standin.__qualname__ = name.replace(".", "_")
        return activity.defn(name=name)(standin)

    def _unknown(self) -> Callable[..., Any]:
        async def unknown(args: Sequence[RawValue]) -> None:
            name = activity.info().activity_type
            self.unknown.append(name)
            raise ApplicationError(f"no stand-in for {name}", non_retryable=True)

        return activity.defn(dynamic=True)(unknown)

    def return_world(self, return_id: uuid.UUID) -> World:
        """A new return's world (keyed by the return's id)."""
        world = World(checkout_id=return_id)
        self.worlds[return_id] = world
        return world

    def _world_of_caller(self, name: str) -> World:
        caller = activity.info().workflow_id or ""
        checkout_id = checkout_id_of(caller) or return_id_of(caller)
        world = self.worlds.get(checkout_id) if checkout_id else None
        if world is None:
            raise ApplicationError(f"{name}: no world for this run", non_retryable=True)
        return world


async def _act(world: World, name: str, effect: Callable[[], Any]) -> Any:
    """Run one attempt as the world's script says: fail, hang, or do the work."""
    world.attempts[name] += 1
    world.scheduled[name] = activity.info().current_attempt_scheduled_time
    behaviour = world.script.get(name)
    if isinstance(behaviour, Hang):
        await _held(behaviour)
    if isinstance(behaviour, Fail) and (
        behaviour.times is None or world.attempts[name] <= behaviour.times
    ):
        raise ApplicationError(
            f"{name} failed for good", type=behaviour.code.value, non_retryable=True
        )
    if isinstance(behaviour, Transient) and activity.info().attempt <= behaviour.times:
        if behaviour.after_effect:
            effect()
        raise ApplicationError(f"{name} failed for now (attempt {activity.info().attempt})")
    result = effect()
    world.calls.append(name)
    return result


async def _held(hang: Hang) -> None:
    """Heartbeat until released (or cancelled: the CancelledError propagates)."""
    hang.entered.set()
    while not hang.released.is_set():
        activity.heartbeat()
        try:
            await asyncio.wait_for(hang.released.wait(), BEAT.total_seconds())
        except TimeoutError:
            pass
