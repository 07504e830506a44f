"""Order steps of the checkout: create (compensated by cancel), mark paid, mark fulfilling."""

from __future__ import annotations

from temporalio import activity

from activities.orders.contract import (
    CANCEL,
    CREATE,
    MARK_FULFILLING,
    MARK_PAID,
    MOVE_RETURN,
    RECEIVE_RETURN,
    CancelOrderInput,
    CreateOrderInput,
    MoveReturnInput,
    OrderInfo,
    OrderTransitionInput,
    ReceivedLineValue,
    ReceivedReturn,
    ReceiveReturnInput,
)
from activities.shared import MoneyValue
from domains.orders import returns, service
from domains.orders.models import Order, OrderStatus
from domains.orders.statuses import ReturnStatus
from kit.db import DomainDatabase
from kit.money import Money


def _info(order: Order) -> OrderInfo:
    return OrderInfo(
        order_id=order.id,
        order_number=order.order_number,
        status=order.status,
        total=MoneyValue.of(Money.of(order.total_amount, order.currency)),
    )


class OrdersActivities:
    """Activities on the `orders` task queue, holding only the orders database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=CREATE.name)
    async def create_order(self, input: CreateOrderInput) -> OrderInfo:
        """The checkout's one order, `pending_payment`."""
        currency = input.currency
        spec = service.NewOrder(
            checkout_id=input.checkout_id,
            user_id=input.user_id,
            lines=[
                service.NewOrderLine(
                    product_id=line.product_id,
                    variant_id=line.variant_id,
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=Money.of(line.unit_price, currency),
                    tax=Money.of(input.line_taxes.get(line.variant_id, 0), currency),
                )
                for line in input.lines
            ],
            subtotal=input.subtotal.money(),
            discount=input.discount.money(),
            total=input.total.money(),
            shipping=input.shipping.money() if input.shipping else None,
            tax=input.tax.money() if input.tax else None,
            coupon_code=input.coupon_code,
            shipping_address=input.shipping_address.model_dump(mode="json"),
            billing_address=(
                input.billing_address.model_dump(mode="json") if input.billing_address else None
            ),
        )
        async with self.db.begin() as session:
            return _info(await service.create_order(session, spec))

    @activity.defn(name=CANCEL.name)
    async def cancel_order(self, input: CancelOrderInput) -> bool:
        """Compensation of create: the order is cancelled (or refunded); no-op if it has none."""
        async with self.db.begin() as session:
            return await service.cancel_for_checkout(
                session, input.checkout_id, input.reason, refunded=input.refunded
            )

    @activity.defn(name=MARK_PAID.name)
    async def mark_paid(self, input: OrderTransitionInput) -> OrderInfo:
        """The payment is captured."""
        return await self._move(input, OrderStatus.PAID)

    @activity.defn(name=MARK_FULFILLING.name)
    async def mark_fulfilling(self, input: OrderTransitionInput) -> OrderInfo:
        """A shipment is booked."""
        return await self._move(input, OrderStatus.FULFILLING)

    async def _move(self, input: OrderTransitionInput, to: OrderStatus) -> OrderInfo:
        async with self.db.begin() as session:
            order = await service.transition_checkout_order(
                session, input.checkout_id, to, input.reason
            )
            return _info(order)

    @activity.defn(name=MOVE_RETURN.name)
    async def move_return(self, input: MoveReturnInput) -> bool:
        """Move a return to a status (recording its label or note); False if it was there."""
        label = (
            returns.Label(input.label.carrier, input.label.tracking_number, input.label.label_url)
            if input.label
            else None
        )
        async with self.db.begin() as session:
            return await returns.move(
                session,
                input.return_id,
                ReturnStatus(input.to),
                input.reason,
                label=label,
                note=input.note,
            )

    @activity.defn(name=RECEIVE_RETURN.name)
    async def receive_return(self, input: ReceiveReturnInput) -> ReceivedReturn:
        """Record what came back of a return, and what of it goes back to stock."""
        asked = [returns.Received(x.order_item_id, x.quantity, x.restock) for x in input.lines]
        async with self.db.begin() as session:
            recorded = await returns.receive(session, input.return_id, asked, input.reason)
        return ReceivedReturn(
            lines=[
                ReceivedLineValue(
                    order_item_id=r.order_item_id, quantity=r.quantity, restock=r.restock
                )
                for r in recorded
            ]
        )
