"""Stock and reservations. Overselling is impossible: `reserved <= total_stock` is a CHECK, and
reservations move `reserved` in the same transaction, by conditional updates in variant order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, column, select, update, values
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from domains.inventory.errors import InventoryNotFound, OutOfStock, StockBelowReserved
from domains.inventory.events import AGGREGATE, ReservationChanged, Restocked, StockLevel
from domains.inventory.models import InventoryItem, InventoryReservation, InventoryRestock
from domains.inventory.statuses import ReservationStatus
from kit.outbox import NewEvent, append_event, append_events


@dataclass(frozen=True)
class Line:
    """Units of one variant to reserve."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int


async def set_stock(
    session: AsyncSession, variant_id: uuid.UUID, product_id: uuid.UUID, total_stock: int
) -> InventoryItem:
    """Set a variant's total stock; StockBelowReserved if checkouts hold more than that."""
    item: InventoryItem | None = await session.scalar(
        insert(InventoryItem)
        .values(id=uuid.uuid4(), product_id=product_id, variant_id=variant_id, total_stock=0)
        .on_conflict_do_update(
            index_elements=[InventoryItem.variant_id], set_={"product_id": product_id}
        )
        .returning(InventoryItem)
    )
    assert item is not None
    await session.refresh(item, with_for_update=True)
    if total_stock < item.reserved:
        raise StockBelowReserved(f"{item.reserved} units are reserved", variant_id=str(variant_id))
    item.total_stock = total_stock
    await session.flush()
    await append_event(
        session,
        AGGREGATE,
        variant_id,
        "inventory.stock_set",
        StockLevel(variant_id=variant_id, total_stock=total_stock, reserved=item.reserved),
    )
    return item


async def get_stock(session: AsyncSession, variant_id: uuid.UUID) -> InventoryItem:
    """The variant's inventory record."""
    item: InventoryItem | None = await session.scalar(
        select(InventoryItem).where(InventoryItem.variant_id == variant_id)
    )
    if item is None:
        raise InventoryNotFound("no inventory for this variant", variant_id=str(variant_id))
    return item


@dataclass(frozen=True)
class Reservation:
    """A reservation row as a statement returned it."""

    id: uuid.UUID
    checkout_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int
    status: str
    order_id: uuid.UUID | None


_R = InventoryReservation
_RESERVATION_COLUMNS = (_R.id, _R.checkout_id, _R.variant_id, _R.quantity, _R.status, _R.order_id)


_ReservationRow = Row[uuid.UUID, uuid.UUID, uuid.UUID, int, str, uuid.UUID | None]


def _reservation(row: _ReservationRow) -> Reservation:
    return Reservation(*row)


def _change(kind: str, reservation: Reservation) -> NewEvent:
    payload = ReservationChanged.model_validate(reservation, from_attributes=True)
    return NewEvent(AGGREGATE, reservation.variant_id, f"inventory.{kind}", payload)


@dataclass(frozen=True)
class _StockDelta:
    variant_id: uuid.UUID
    reserved: int
    total_stock: int


async def _move_stock(
    connection: AsyncConnection, deltas: Sequence[_StockDelta], *, within_stock: bool = False
) -> set[uuid.UUID]:
    """Add `deltas` to the variants' `reserved` and `total_stock` in one statement; the variants
    it changed. With `within_stock`, a variant whose free stock is below its `reserved` delta is
    left alone (and missing from the answer).

    The rows are locked in variant order first (a CTE `SELECT ... ORDER BY ... FOR UPDATE`), as
    every writer of stock locks them, so two transactions never wait for each other in a cycle.
    """
    locked = (
        select(InventoryItem.variant_id)
        .where(InventoryItem.variant_id.in_([d.variant_id for d in deltas]))
        .order_by(InventoryItem.variant_id)
        .with_for_update()
        .cte("locked")
    )
    delta = values(
        column("variant_id", UUID(as_uuid=True)),
        column("reserved", Integer),
        column("total_stock", Integer),
        name="delta",
    ).data([(d.variant_id, d.reserved, d.total_stock) for d in deltas])
    statement = (
        update(InventoryItem)
        .where(
            InventoryItem.variant_id == locked.c.variant_id,
            InventoryItem.variant_id == delta.c.variant_id,
        )
        .values(
            reserved=InventoryItem.reserved + delta.c.reserved,
            total_stock=InventoryItem.total_stock + delta.c.total_stock,
        )
        .returning(InventoryItem.variant_id)
    )
    if within_stock:
        statement = statement.where(
            InventoryItem.total_stock - InventoryItem.reserved >= delta.c.reserved
        )
    return set((await connection.scalars(statement)).all())


def _merged(lines: Sequence[Line]) -> list[Line]:
    """One line per variant (quantities summed), in variant order."""
    merged: dict[uuid.UUID, Line] = {}
    for line in lines:
        seen = merged.get(line.variant_id)
        quantity = line.quantity + (seen.quantity if seen else 0)
        merged[line.variant_id] = Line(line.product_id, line.variant_id, quantity)
    return sorted(merged.values(), key=lambda item: item.variant_id)


async def reserve(
    session: AsyncSession, checkout_id: uuid.UUID, lines: Sequence[Line], expires_at: datetime
) -> list[Reservation]:
    """Reserve every line for `checkout_id` until `expires_at`, or raise OutOfStock for all.

    Idempotent by construction: the reservation rows are inserted first (unique per checkout and
    variant, one multi-row `INSERT ... ON CONFLICT DO NOTHING`); only rows this call inserted move
    `reserved`, all in one guarded UPDATE. A concurrent retry of the same checkout blocks on that
    unique key and then finds the rows. The caller's transaction rolls everything back when one
    line is short. Three statements for a first attempt, whatever the number of lines.
    """
    ordered = _merged(lines)
    connection = await session.connection()
    inserted = await connection.execute(
        insert(InventoryReservation)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "checkout_id": checkout_id,
                    "variant_id": line.variant_id,
                    "quantity": line.quantity,
                    "status": ReservationStatus.ACTIVE.value,
                    "expires_at": expires_at,
                }
                for line in ordered
            ]
        )
        .on_conflict_do_nothing(index_elements=[_R.checkout_id, _R.variant_id])
        .returning(*_RESERVATION_COLUMNS)
    )
    created = sorted(map(_reservation, inserted), key=lambda r: r.variant_id)
    if created:
        deltas = [_StockDelta(r.variant_id, r.quantity, 0) for r in created]
        taken = await _move_stock(connection, deltas, within_stock=True)
        for short in (r for r in created if r.variant_id not in taken):
            raise OutOfStock(
                "not enough stock", variant_id=str(short.variant_id), quantity=short.quantity
            )
        await append_events(session, [_change("reserved", r) for r in created])
    if len(created) == len(ordered):
        return created
    found = await connection.execute(
        select(*_RESERVATION_COLUMNS).where(
            _R.checkout_id == checkout_id,
            _R.variant_id.in_([line.variant_id for line in ordered]),
            _R.id.not_in([r.id for r in created]),
        )
    )
    return sorted(created + list(map(_reservation, found)), key=lambda r: r.variant_id)


async def _move_reservations(
    connection: AsyncConnection,
    checkout_id: uuid.UUID,
    wanted: Sequence[ReservationStatus],
    **values: Any,
) -> list[tuple[str, Reservation]]:
    """Set `values` on the checkout's reservations whose status is in `wanted`, in one UPDATE
    (rows locked in variant order, the status rechecked under the lock); each changed
    reservation as it is now, with the status it had, in variant order."""
    statuses = [s.value for s in wanted]
    held = (
        select(_R.id, _R.status)
        .where(_R.checkout_id == checkout_id, _R.status.in_(statuses))
        .order_by(_R.variant_id)
        .with_for_update()
        .cte("held")
    )
    rows = await connection.execute(
        update(InventoryReservation)
        .where(_R.id == held.c.id, _R.status.in_(statuses))
        .values(**values)
        .returning(*_RESERVATION_COLUMNS, held.c.status.label("previous"))
    )
    moved = [(row.previous, Reservation(*row[:6])) for row in rows]
    return sorted(moved, key=lambda pair: pair[1].variant_id)


async def release(
    session: AsyncSession,
    checkout_id: uuid.UUID,
    *,
    restock: bool = False,
    status: ReservationStatus = ReservationStatus.RELEASED,
) -> int:
    """Give back the checkout's active reservations; with `restock`, committed units too.

    Returns how many reservations changed (0: nothing to undo, as for a second release). Three
    statements when there is something to give back: the reservations, the stock, the events.
    """
    wanted = [ReservationStatus.ACTIVE] + ([ReservationStatus.COMMITTED] if restock else [])
    connection = await session.connection()
    moved = await _move_reservations(connection, checkout_id, wanted, status=status.value)
    if not moved:
        return 0
    deltas = [
        # An active reservation frees its units; taken stock comes back to the shelf.
        _StockDelta(r.variant_id, -r.quantity, 0)
        if previous == ReservationStatus.ACTIVE.value
        else _StockDelta(r.variant_id, 0, r.quantity)
        for previous, r in moved
    ]
    await _move_stock(connection, deltas)
    await append_events(session, [_change(status.value, r) for _, r in moved])
    return len(moved)


async def commit(session: AsyncSession, checkout_id: uuid.UUID, order_id: uuid.UUID) -> int:
    """Turn the checkout's active reservations into taken stock for `order_id`; how many.

    Only active reservations move (the guard is the UPDATE's WHERE, rechecked under the row
    locks): committing twice, or after a release, changes nothing. Three statements: the
    reservations, the stock, the events.
    """
    connection = await session.connection()
    moved = await _move_reservations(
        connection,
        checkout_id,
        [ReservationStatus.ACTIVE],
        status=ReservationStatus.COMMITTED.value,
        order_id=order_id,
    )
    if not moved:
        return 0
    await _move_stock(
        connection, [_StockDelta(r.variant_id, -r.quantity, -r.quantity) for _, r in moved]
    )
    await append_events(session, [_change("committed", r) for _, r in moved])
    return len(moved)


async def expired_checkouts(
    session: AsyncSession, now: datetime, *, after: uuid.UUID | None = None, limit: int = 100
) -> list[uuid.UUID]:
    """One page of checkouts holding active reservations past their expiry (the sweeper's
    candidates), in id order from just past `after`: the last id of a page is the next cursor."""
    query = select(InventoryReservation.checkout_id).where(
        InventoryReservation.status == ReservationStatus.ACTIVE.value,
        InventoryReservation.expires_at < now,
    )
    if after is not None:
        query = query.where(InventoryReservation.checkout_id > after)
    rows = await session.scalars(
        query.group_by(InventoryReservation.checkout_id)
        .order_by(InventoryReservation.checkout_id)
        .limit(limit)
    )
    return list(rows)


@dataclass(frozen=True)
class ReturnedLine:
    """Units of an order line that came back and go back to stock."""

    order_item_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int


async def restock(
    session: AsyncSession, return_id: uuid.UUID, lines: Sequence[ReturnedLine]
) -> int:
    """Put a return's received units back on the shelf, each (return, order line) at most once;
    how many units went back now (0 for a repeat).

    The restock rows are inserted first (unique per return and order line, `ON CONFLICT DO
    NOTHING`); only the rows this call inserted raise `total_stock`, in the same transaction.
    """
    wanted = [line for line in lines if line.quantity > 0]
    if not wanted:
        return 0
    connection = await session.connection()
    inserted = await connection.execute(
        insert(InventoryRestock)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "return_id": return_id,
                    "order_item_id": line.order_item_id,
                    "variant_id": line.variant_id,
                    "quantity": line.quantity,
                }
                for line in wanted
            ]
        )
        .on_conflict_do_nothing(
            index_elements=[InventoryRestock.return_id, InventoryRestock.order_item_id]
        )
        .returning(
            InventoryRestock.order_item_id, InventoryRestock.variant_id, InventoryRestock.quantity
        )
    )
    new = [ReturnedLine(*row) for row in inserted]
    if not new:
        return 0
    per_variant: dict[uuid.UUID, int] = {}
    for line in new:
        per_variant[line.variant_id] = per_variant.get(line.variant_id, 0) + line.quantity
    await _move_stock(
        connection,
        [_StockDelta(variant, 0, quantity) for variant, quantity in sorted(per_variant.items())],
    )
    await append_events(
        session,
        [
            NewEvent(
                AGGREGATE,
                line.variant_id,
                "inventory.restocked",
                Restocked(
                    return_id=return_id,
                    order_item_id=line.order_item_id,
                    variant_id=line.variant_id,
                    quantity=line.quantity,
                ),
            )
            for line in new
        ],
    )
    return sum(line.quantity for line in new)


async def restocked(session: AsyncSession, return_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """What a return put back on the shelf, per order line."""
    rows = await session.execute(
        select(InventoryRestock.order_item_id, InventoryRestock.quantity).where(
            InventoryRestock.return_id == return_id
        )
    )
    return {item: quantity for item, quantity in rows}
