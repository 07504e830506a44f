"""Orders: created once per checkout with everything in it, moved only along allowed transitions,
each change recorded as a transition row and an outbox event."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text

from domains.orders import service
from domains.orders.errors import InvalidOrder, InvalidTransition
from domains.orders.models import Order, OrderAddress, OrderItem, OrderStateTransition
from domains.orders.statuses import OrderStatus
from kit.db import DomainDatabase
from kit.money import Money

S = OrderStatus


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["orders"]


def _spec(checkout_id: uuid.UUID) -> service.NewOrder:
    price = Money.of(Decimal("12.50"), "EUR")
    lines = [
        service.NewOrderLine(uuid.uuid4(), uuid.uuid4(), "SKU-A", 2, price),
        service.NewOrderLine(uuid.uuid4(), uuid.uuid4(), "SKU-B", 1, price),
    ]
    total = Money.of(Decimal("37.50"), "EUR")
    return service.NewOrder(
        checkout_id=checkout_id,
        user_id=uuid.uuid4(),
        lines=lines,
        subtotal=total,
        discount=Money.zero("EUR"),
        total=total,
        coupon_code=None,
        shipping_address={"line1": "1 Test Street", "city": "Testville", "country": "DE"},
        billing_address=None,
    )


async def _create(db: DomainDatabase, checkout_id: uuid.UUID) -> uuid.UUID:
    async with db.begin() as session:
        return (await service.create_order(session, _spec(checkout_id))).id


async def _move(db: DomainDatabase, checkout_id: uuid.UUID, to: OrderStatus) -> str:
    async with db.begin() as session:
        order = await service.transition_checkout_order(session, checkout_id, to, "test")
        return order.status


async def _rows(db: DomainDatabase, order_id: uuid.UUID) -> dict[str, Any]:
    """What the database holds of the order: its children, transitions and events."""
    async with db.begin() as session:

        async def count(model: type[OrderItem] | type[OrderAddress]) -> int:
            query = select(func.count()).select_from(model).where(model.order_id == order_id)
            return int(await session.scalar(query) or 0)

        transitions = await session.execute(
            select(OrderStateTransition.from_state, OrderStateTransition.to_state)
            .where(OrderStateTransition.order_id == order_id)
            .order_by(OrderStateTransition.changed_at, OrderStateTransition.id)
        )
        events = await session.scalars(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :o ORDER BY seq"
            ),
            {"o": order_id},
        )
        return {
            "items": await count(OrderItem),
            "addresses": await count(OrderAddress),
            "transitions": [tuple(row) for row in transitions],
            "events": list(events),
        }


async def test_an_order_is_created_once_with_its_lines_addresses_and_event(
    db: DomainDatabase,
) -> None:
    checkout_id = uuid.uuid4()

    ids = await asyncio.gather(*(_create(db, checkout_id) for _ in range(3)))
    again = await _create(db, checkout_id)

    assert len({*ids, again}) == 1
    assert await _rows(db, again) == {
        "items": 2,
        "addresses": 2,
        "transitions": [(None, "pending_payment")],
        "events": ["order.created"],
    }
    async with db.begin() as session:
        view = await service.get_order(session, again, None)
    assert view.order.order_number.startswith("ORD-")
    assert [(i.sku, i.quantity, i.total_price) for i in view.items] == [
        ("SKU-A", 2, Decimal("25.0000")),
        ("SKU-B", 1, Decimal("12.5000")),
    ]
    assert sorted(a.type for a in view.addresses) == ["billing", "shipping"]


async def test_orders_draw_distinct_numbers(db: DomainDatabase) -> None:
    ids = [await _create(db, uuid.uuid4()) for _ in range(3)]
    async with db.begin() as session:
        numbers = [(await service.get_order(session, i, None)).order.order_number for i in ids]
    assert len(set(numbers)) == 3


async def test_each_move_is_recorded_once_and_a_repeat_changes_nothing(db: DomainDatabase) -> None:
    checkout_id = uuid.uuid4()
    order_id = await _create(db, checkout_id)

    assert await _move(db, checkout_id, S.PAID) == "paid"
    assert await _move(db, checkout_id, S.PAID) == "paid"
    assert await _move(db, checkout_id, S.FULFILLING) == "fulfilling"
    assert await _move(db, checkout_id, S.PAID) == "fulfilling"  # a later state satisfies it

    rows = await _rows(db, order_id)
    assert rows["transitions"] == [
        (None, "pending_payment"),
        ("pending_payment", "paid"),
        ("paid", "fulfilling"),
    ]
    assert rows["events"] == ["order.created", "order.paid", "order.fulfilling"]


async def test_concurrent_moves_record_one_transition(db: DomainDatabase) -> None:
    checkout_id = uuid.uuid4()
    order_id = await _create(db, checkout_id)

    await asyncio.gather(*(_move(db, checkout_id, S.PAID) for _ in range(4)))

    assert (await _rows(db, order_id))["events"] == ["order.created", "order.paid"]


async def test_a_cancelled_order_does_not_move_forward(db: DomainDatabase) -> None:
    checkout_id = uuid.uuid4()
    order_id = await _create(db, checkout_id)
    async with db.begin() as session:
        assert await service.cancel_for_checkout(session, checkout_id, "test", refunded=False)
    async with db.begin() as session:
        assert not await service.cancel_for_checkout(session, checkout_id, "again", refunded=True)

    with pytest.raises(InvalidTransition):
        await _move(db, checkout_id, S.PAID)

    rows = await _rows(db, order_id)
    assert rows["transitions"][-1] == ("pending_payment", "cancelled")
    assert rows["events"] == ["order.created", "order.cancelled"]


async def test_an_order_keeps_its_whole_price_and_each_lines_share(db: DomainDatabase) -> None:
    eur = "EUR"
    lines = [
        service.NewOrderLine(
            uuid.uuid4(),
            uuid.uuid4(),
            "SKU-A",
            1,
            Money.of("10.00", eur),
            tax=Money.of("1.90", eur),
        ),
        service.NewOrderLine(
            uuid.uuid4(),
            uuid.uuid4(),
            "SKU-B",
            2,
            Money.of("10.00", eur),
            tax=Money.of("3.80", eur),
        ),
    ]
    spec = service.NewOrder(
        checkout_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        lines=lines,
        subtotal=Money.of("30.00", eur),
        discount=Money.of("10.00", eur),
        # 20.00 + shipping 4.90 + tax 5.70 on the lines and 0.93 on the shipping.
        total=Money.of("31.53", eur),
        shipping=Money.of("4.90", eur),
        tax=Money.of("6.63", eur),
        coupon_code="TEN",
        shipping_address={"line1": "1 Test Street", "city": "Testville", "country": "DE"},
        billing_address=None,
    )
    async with db.begin() as session:
        order = await service.create_order(session, spec)
    async with db.begin() as session:
        view = await service.get_order(session, order.id, None)
    assert (view.order.shipping_amount, view.order.tax_amount) == (Decimal("4.90"), Decimal("6.63"))
    by_sku = {item.sku: item for item in view.items}
    # The discount pro rata to line value: a third and two thirds, the remainder on the larger.
    assert by_sku["SKU-A"].discount_amount == Decimal("3.33")
    assert by_sku["SKU-B"].discount_amount == Decimal("6.67")
    assert (by_sku["SKU-A"].tax_amount, by_sku["SKU-B"].tax_amount) == (
        Decimal("1.90"),
        Decimal("3.80"),
    )


async def test_an_order_whose_money_does_not_add_up_is_refused_before_anything_is_written(
    db: DomainDatabase,
) -> None:
    spec = _spec(uuid.uuid4())
    wrong = service.NewOrder(**{**spec.__dict__, "total": Money.of("37.49", "EUR")})
    with pytest.raises(InvalidOrder):
        async with db.begin() as session:
            await service.create_order(session, wrong)
    async with db.begin() as session:
        found = await session.scalar(
            select(func.count()).select_from(Order).where(Order.checkout_id == spec.checkout_id)
        )
    assert found == 0


async def test_each_further_partial_refund_is_a_change_of_its_own(db: DomainDatabase) -> None:
    checkout_id = uuid.uuid4()
    order_id = await _create(db, checkout_id)
    await _move(db, checkout_id, S.PAID)

    async def refunded(total: str) -> str:
        async with db.begin() as session:
            order = await service.record_refunds(session, checkout_id, Decimal(total), "refund")
            return order.status

    assert await refunded("5.00") == S.PARTIALLY_REFUNDED
    assert await refunded("12.50") == S.PARTIALLY_REFUNDED
    assert await refunded("12.50") == S.PARTIALLY_REFUNDED  # the same report again: no change
    assert await refunded("37.50") == S.REFUNDED
    async with db.begin() as session:
        rows = (
            await session.scalars(
                select(OrderStateTransition.to_state)
                .where(OrderStateTransition.order_id == order_id)
                .order_by(OrderStateTransition.changed_at, OrderStateTransition.id)
            )
        ).all()
        events = await session.scalar(
            text(
                "SELECT count(*) FROM domain_outbox_events"
                " WHERE aggregate_id = :o AND event_type = 'order.partially_refunded'"
            ),
            {"o": order_id},
        )
    assert rows[-3:] == ["partially_refunded", "partially_refunded", "refunded"]
    assert events == 2
