"""Stock and reservations. Overselling is impossible: `reserved <= total_stock` is a CHECK, and
reservations move `reserved` in the same transaction, by conditional updates in variant order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.inventory.errors import InventoryNotFound, OutOfStock, StockBelowReserved
from domains.inventory.events import AGGREGATE, ReservationChanged, StockLevel
from domains.inventory.models import InventoryItem, InventoryReservation
from domains.inventory.statuses import ReservationStatus
from kit.db import insert_or_get
from kit.outbox import append_event


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


async def _event(session: AsyncSession, kind: str, r: InventoryReservation) -> None:
    event = ReservationChanged.model_validate(r, from_attributes=True)
    await append_event(session, AGGREGATE, r.variant_id, f"inventory.{kind}", event)


async def reserve(
    session: AsyncSession, checkout_id: uuid.UUID, lines: Sequence[Line], expires_at: datetime
) -> list[InventoryReservation]:
    """Reserve every line for `checkout_id` until `expires_at`, or raise OutOfStock for all.

    Idempotent by construction: the reservation row is inserted first (unique per checkout and
    variant); only a row this call inserted moves `reserved`. A concurrent retry of the same
    checkout blocks on that unique key and then finds the row. Lines are taken in variant order so
    two checkouts never lock the same items in opposite orders. The caller's transaction rolls
    everything back when one line is short.
    """
    merged: dict[uuid.UUID, Line] = {}
    for line in lines:
        seen = merged.get(line.variant_id)
        quantity = line.quantity + (seen.quantity if seen else 0)
        merged[line.variant_id] = Line(line.product_id, line.variant_id, quantity)
    result = []
    for line in sorted(merged.values(), key=lambda item: item.variant_id):
        reservation, created = await insert_or_get(
            session,
            InventoryReservation,
            {
                "id": uuid.uuid4(),
                "checkout_id": checkout_id,
                "variant_id": line.variant_id,
                "quantity": line.quantity,
                "status": ReservationStatus.ACTIVE.value,
                "expires_at": expires_at,
            },
            key=[InventoryReservation.checkout_id, InventoryReservation.variant_id],
        )
        if not created:
            result.append(reservation)
            continue
        taken = await session.scalar(
            update(InventoryItem)
            .where(
                InventoryItem.variant_id == line.variant_id,
                InventoryItem.total_stock - InventoryItem.reserved >= line.quantity,
            )
            .values(reserved=InventoryItem.reserved + line.quantity)
            .returning(InventoryItem.id)
        )
        if taken is None:
            raise OutOfStock(
                "not enough stock", variant_id=str(line.variant_id), quantity=line.quantity
            )
        await _event(session, "reserved", reservation)
        result.append(reservation)
    return result


async def _held(
    session: AsyncSession, checkout_id: uuid.UUID, statuses: Sequence[ReservationStatus]
) -> list[InventoryReservation]:
    rows = await session.scalars(
        select(InventoryReservation)
        .where(
            InventoryReservation.checkout_id == checkout_id,
            InventoryReservation.status.in_([s.value for s in statuses]),
        )
        .order_by(InventoryReservation.variant_id)
        .with_for_update()
    )
    return list(rows)


async def release(
    session: AsyncSession,
    checkout_id: uuid.UUID,
    *,
    restock: bool = False,
    status: ReservationStatus = ReservationStatus.RELEASED,
) -> int:
    """Give back the checkout's active reservations; with `restock`, committed units too.

    Returns how many reservations changed (0: nothing to undo).
    """
    wanted = [ReservationStatus.ACTIVE] + ([ReservationStatus.COMMITTED] if restock else [])
    changed = 0
    for reservation in await _held(session, checkout_id, wanted):
        if reservation.status == ReservationStatus.ACTIVE:
            delta = {"reserved": InventoryItem.reserved - reservation.quantity}
        else:  # taken stock comes back to the shelf
            delta = {"total_stock": InventoryItem.total_stock + reservation.quantity}
        await session.execute(
            update(InventoryItem)
            .where(InventoryItem.variant_id == reservation.variant_id)
            .values(**delta)
        )
        reservation.status = status.value
        await _event(session, status.value, reservation)
        changed += 1
    return changed


async def commit(session: AsyncSession, checkout_id: uuid.UUID, order_id: uuid.UUID) -> int:
    """Turn the checkout's active reservations into taken stock for `order_id`."""
    changed = 0
    for reservation in await _held(session, checkout_id, [ReservationStatus.ACTIVE]):
        await session.execute(
            update(InventoryItem)
            .where(InventoryItem.variant_id == reservation.variant_id)
            .values(
                total_stock=InventoryItem.total_stock - reservation.quantity,
                reserved=InventoryItem.reserved - reservation.quantity,
            )
        )
        reservation.status = ReservationStatus.COMMITTED.value
        reservation.order_id = order_id
        await _event(session, "committed", reservation)
        changed += 1
    return changed


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
