"""Returns in the orders domain: asked for only of a delivered order within the window, never
beyond what is left of a line (even by two concurrent requests), refunded pro rata with the last
units taking what is left and the shipping once everything is back, one return per key; and an
inventory restock that happens at most once per return and line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from api.schemas import NOTE_LIMIT, ResolutionIn
from domains.inventory import service as inventory
from domains.inventory.models import InventoryItem
from domains.orders import returns, service
from domains.orders.errors import (
    OrderNotReturnable,
    ReturnKeyMismatch,
    ReturnLineUnknown,
    ReturnQuantityExceeded,
    ReturnWindowClosed,
)
from domains.orders.models import OrderItem
from domains.orders.statuses import OrderStatus, ReturnStatus
from kit.db import DomainDatabase
from kit.money import Money

WINDOW = timedelta(days=30)


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["orders"]


async def _order(db: DomainDatabase, *, delivered: bool = True) -> tuple[uuid.UUID, uuid.UUID]:
    """A delivered order: 3 x 30.00 and 1 x 10.00, 8.00 off, 5.00 shipping, tax 4.00 on the lines
    and 0.50 on the shipping. Its id and its buyer's."""
    usd = "USD"
    lines = [
        service.NewOrderLine(
            uuid.uuid4(), uuid.uuid4(), "SHIRT", 3, Money.of("30.00", usd), Money.of("3.00", usd)
        ),
        service.NewOrderLine(
            uuid.uuid4(), uuid.uuid4(), "SOCKS", 1, Money.of("10.00", usd), Money.of("1.00", usd)
        ),
    ]
    spec = service.NewOrder(
        checkout_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        lines=lines,
        subtotal=Money.of("100.00", usd),
        discount=Money.of("8.00", usd),
        total=Money.of("101.50", usd),
        coupon_code="EIGHT",
        shipping_address={"line1": "1 Test Street", "city": "Testville", "country": "US"},
        billing_address=None,
        shipping=Money.of("5.00", usd),
        tax=Money.of("4.50", usd),
    )
    async with db.begin() as session:
        order = await service.create_order(session, spec)
        for status in (OrderStatus.PAID, OrderStatus.FULFILLING):
            await service.transition(session, order, status, "test")
        if delivered:
            await service.advance(session, order, OrderStatus.DELIVERED, "test")
        return order.id, order.user_id


async def _items(db: DomainDatabase, order_id: uuid.UUID) -> dict[str, uuid.UUID]:
    async with db.begin() as session:
        rows = await session.execute(
            select(OrderItem.sku, OrderItem.id).where(OrderItem.order_id == order_id)
        )
        return {sku: item for sku, item in rows}


async def _ask(
    db: DomainDatabase,
    order: tuple[uuid.UUID, uuid.UUID],
    lines: dict[uuid.UUID, int],
    key: str | None = None,
) -> tuple[returns.ReturnView, bool]:
    request = returns.ReturnRequest(
        order_id=order[0],
        user_id=order[1],
        idempotency_key=key or uuid.uuid4().hex,
        lines=lines,
        reason="too big",
    )
    async with db.begin() as session:
        return await returns.request_return(session, request, WINDOW)


async def test_refunds_are_pro_rata_the_last_units_take_the_rest_and_shipping_comes_last(
    db: DomainDatabase,
) -> None:
    order = await _order(db)
    item = await _items(db, order[0])
    # SHIRT: 90.00 - 7.20 discount + 3.00 tax = 85.80 for 3 units; SOCKS: 10.00 - 0.80 + 1.00.
    one, created = await _ask(db, order, {item["SHIRT"]: 1})
    assert created
    assert one.order_return.refund_amount == Decimal("28.60")
    assert one.order_return.status == ReturnStatus.REQUESTED
    socks, _ = await _ask(db, order, {item["SOCKS"]: 1})
    assert socks.order_return.refund_amount == Decimal("10.20")
    # The last two shirts complete the order: what is left of the line plus shipping and its tax.
    rest, _ = await _ask(db, order, {item["SHIRT"]: 2})
    assert rest.order_return.refund_amount == Decimal("57.20") + Decimal("5.50")
    assert rest.order_return.shipping_refund_amount == Decimal("5.50")
    total = sum((r.order_return.refund_amount for r in (one, socks, rest)), start=Decimal(0))
    assert total == Decimal("101.50")  # everything the buyer paid, to the cent


async def test_never_more_than_is_left_and_a_rejected_return_frees_its_units(
    db: DomainDatabase,
) -> None:
    order = await _order(db)
    item = await _items(db, order[0])
    first, _ = await _ask(db, order, {item["SOCKS"]: 1})
    with pytest.raises(ReturnQuantityExceeded) as raised:
        await _ask(db, order, {item["SOCKS"]: 1})
    assert raised.value.details["available"] == 0
    with pytest.raises(ReturnLineUnknown):
        await _ask(db, order, {uuid.uuid4(): 1})
    async with db.begin() as session:
        await returns.move(session, first.order_return.id, ReturnStatus.REJECTED, "operator")
    again, created = await _ask(db, order, {item["SOCKS"]: 1})
    assert created
    assert again.order_return.refund_amount == Decimal("10.20")


async def test_two_concurrent_returns_cannot_both_take_the_last_units(db: DomainDatabase) -> None:
    order = await _order(db)
    item = await _items(db, order[0])
    outcomes = await asyncio.gather(
        *(_ask(db, order, {item["SHIRT"]: 2}) for _ in range(2)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, ReturnQuantityExceeded)]
    made = [o for o in outcomes if isinstance(o, tuple)]
    assert (len(made), len(refused)) == (1, 1)


async def test_one_return_per_key_and_another_body_is_refused(db: DomainDatabase) -> None:
    order = await _order(db)
    item = await _items(db, order[0])
    first, created = await _ask(db, order, {item["SHIRT"]: 1}, key="k1")
    again, created_again = await _ask(db, order, {item["SHIRT"]: 1}, key="k1")
    assert (created, created_again) == (True, False)
    assert again.order_return.id == first.order_return.id
    with pytest.raises(ReturnKeyMismatch):
        await _ask(db, order, {item["SHIRT"]: 2}, key="k1")


async def test_only_a_delivered_order_within_the_window(db: DomainDatabase) -> None:
    paid = await _order(db, delivered=False)
    with pytest.raises(OrderNotReturnable):
        await _ask(db, paid, {(await _items(db, paid[0]))["SHIRT"]: 1})
    late = await _order(db)
    async with db.begin() as session:
        await session.execute(
            text(
                "UPDATE order_state_transitions SET changed_at = now() - interval '31 days'"
                " WHERE order_id = :o AND to_state = 'delivered'"
            ),
            {"o": late[0]},
        )
    with pytest.raises(ReturnWindowClosed):
        await _ask(db, late, {(await _items(db, late[0]))["SHIRT"]: 1})


async def _forget(db: DomainDatabase, statement: str, key: uuid.UUID) -> None:
    """Take away what a test of one domain left half-done: a return received without the
    inventory's restock, or a restock without its return. The databases are the session's, and
    the whole-platform invariants checked by later tests would rightly call either a violation."""
    async with db.begin() as session:
        await session.execute(text(statement), {"id": key})


async def test_receiving_records_restock_within_what_came_back(db: DomainDatabase) -> None:
    order = await _order(db)
    item = await _items(db, order[0])
    asked, _ = await _ask(db, order, {item["SHIRT"]: 2, item["SOCKS"]: 1})
    return_id = asked.order_return.id
    async with db.begin() as session:
        await returns.move(session, return_id, ReturnStatus.APPROVED, "operator")
    counted = [returns.Received(item["SHIRT"], 5, 9)]  # capped at the line: 2 back, 2 restocked
    async with db.begin() as session:
        first = await returns.receive(session, return_id, counted, "operator")
    async with db.begin() as session:
        second = await returns.receive(session, return_id, [], "carrier")  # a repeat: unchanged
    assert sorted((r.quantity, r.restock) for r in first) == [(1, 0), (2, 2)]
    assert second == first
    await _forget(db, "DELETE FROM orders WHERE id = :id", order[0])


async def test_a_restock_happens_once_per_return_and_line(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["inventory"]
    variant = uuid.uuid4()
    async with db.begin() as session:
        await inventory.set_stock(session, variant, uuid.uuid4(), 5)
    return_id, line = uuid.uuid4(), inventory.ReturnedLine(uuid.uuid4(), variant, 2)

    async def restock() -> int:
        async with db.begin() as session:
            return await inventory.restock(session, return_id, [line])

    added = await asyncio.gather(restock(), restock(), restock())
    assert sorted(added) == [0, 0, 2]
    async with db.begin() as session:
        stock = await session.scalar(
            select(func.max(InventoryItem.total_stock)).where(InventoryItem.variant_id == variant)
        )
        assert stock == 7
        assert await inventory.restocked(session, return_id) == {line.order_item_id: 2}
    await _forget(db, "DELETE FROM inventory_restocks WHERE return_id = :id", return_id)


async def test_an_operator_note_as_long_as_the_api_takes_is_kept(db: DomainDatabase) -> None:
    """A rejection's note of the most characters the API accepts is stored whole (the column
    once held half of it: the rejection failed with a database error)."""
    longest = "n" * NOTE_LIMIT
    ResolutionIn(note=longest)  # the API takes it
    order = await _order(db)
    item = await _items(db, order[0])
    asked, _ = await _ask(db, order, {item["SOCKS"]: 1})

    async with db.begin() as session:
        await returns.move(
            session, asked.order_return.id, ReturnStatus.REJECTED, "operator", note=longest
        )

    async with db.begin() as session:
        kept = await session.scalar(
            text("SELECT note FROM order_returns WHERE id = :r"), {"r": asked.order_return.id}
        )
    assert kept == longest
