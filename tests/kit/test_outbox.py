"""The outbox row commits or vanishes with the state change, in the same database."""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, text

from domains.inventory.models import InventoryItem
from kit.db import DomainDatabase
from kit.outbox import NewEvent, append_event, append_events


class StockChanged(BaseModel):
    variant_id: uuid.UUID
    total_stock: int


class Boom(Exception):
    pass


async def _events_for(db: DomainDatabase, aggregate_id: uuid.UUID) -> list[dict[str, object]]:
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT event_type, payload, processed, aggregate_type FROM domain_outbox_events "
                "WHERE aggregate_id = :id"
            ),
            {"id": aggregate_id},
        )
        return [dict(r._mapping) for r in rows]


async def _stock_rows(db: DomainDatabase, variant_id: uuid.UUID) -> int:
    async with db.begin() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(InventoryItem)
            .where(InventoryItem.variant_id == variant_id)
        )
        return int(count or 0)


async def _write(db: DomainDatabase, variant_id: uuid.UUID, *, fail: bool) -> None:
    async with db.begin() as session:
        session.add(InventoryItem(product_id=uuid.uuid4(), variant_id=variant_id, total_stock=7))
        await session.flush()
        await append_event(
            session,
            "inventory_item",
            variant_id,
            "inventory.stock_changed",
            StockChanged(variant_id=variant_id, total_stock=7),
        )
        if fail:
            raise Boom


async def test_rolled_back_transaction_leaves_no_outbox_row(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["inventory"]
    variant_id = uuid.uuid4()
    with pytest.raises(Boom):
        await _write(db, variant_id, fail=True)
    assert await _stock_rows(db, variant_id) == 0
    assert await _events_for(db, variant_id) == []


async def test_committed_transaction_leaves_exactly_one_row_in_its_own_database(
    databases: dict[str, DomainDatabase],
) -> None:
    inventory = databases["inventory"]
    variant_id = uuid.uuid4()
    await _write(inventory, variant_id, fail=False)

    assert await _stock_rows(inventory, variant_id) == 1
    events = await _events_for(inventory, variant_id)
    # Whether a relay (the session's platform runs them) has published it already is the relay's
    # business, not the write's: `processed` is left out.
    assert [{k: v for k, v in e.items() if k != "processed"} for e in events] == [
        {
            "event_type": "inventory.stock_changed",
            "payload": {"variant_id": str(variant_id), "total_stock": 7},
            "aggregate_type": "inventory_item",
        }
    ]
    for domain, other in databases.items():
        if domain != "inventory":
            assert await _events_for(other, variant_id) == [], domain


async def test_events_of_one_aggregate_are_numbered_in_write_order(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["orders"]
    aggregate = uuid.uuid4()
    async with db.begin() as session:
        for n in range(5):
            await append_event(
                session,
                "order",
                aggregate,
                f"order.step_{n}",
                StockChanged(variant_id=aggregate, total_stock=n),
            )
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :id ORDER BY seq"
            ),
            {"id": aggregate},
        )
        assert [r[0] for r in rows] == [f"order.step_{n}" for n in range(5)]


async def test_events_appended_together_keep_their_order_payloads_and_headers(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["orders"]
    aggregate = uuid.uuid4()
    events = [
        NewEvent(
            "order",
            aggregate,
            f"order.step_{n}",
            StockChanged(variant_id=aggregate, total_stock=n),
            headers={"checkout_id": f"c-{n}"} if n % 2 else None,
        )
        for n in range(3)
    ]
    async with db.begin() as session:
        ids = await append_events(session, events)
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT id, event_type, payload, headers, jsonb_typeof(payload) "
                "FROM domain_outbox_events WHERE aggregate_id = :id ORDER BY seq"
            ),
            {"id": aggregate},
        )
        found = [tuple(r) for r in rows]
    assert found == [
        (
            ids[n],
            f"order.step_{n}",
            {"variant_id": str(aggregate), "total_stock": n},
            {"checkout_id": f"c-{n}"} if n % 2 else {},
            "object",
        )
        for n in range(3)
    ]


async def test_the_statement_of_an_append_is_compiled_once_for_any_number_of_events(
    databases: dict[str, DomainDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    db, aggregate = databases["orders"], uuid.uuid4()
    event = NewEvent(
        "order", aggregate, "order.x", StockChanged(variant_id=aggregate, total_stock=1)
    )
    # SQLAlchemy logs, after each statement, whether it compiled it or reused its compiled form.
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
        for count in (1, 3, 2):
            async with db.begin() as session:
                await append_events(session, [event] * count)
    # Only this test's appends: the relays of the session's platform run statements meanwhile.
    messages = [r.getMessage() for r in caplog.records]
    runs = [m.split("]")[0] for m in messages if m.startswith("[") and "'order.x'" in m]
    assert len(runs) == 3
    assert [run.startswith("[cached since") for run in runs[1:]] == [True, True], runs


async def test_append_event_needs_a_transaction(databases: dict[str, DomainDatabase]) -> None:
    async with databases["cart"].sessions() as session:
        with pytest.raises(RuntimeError, match="transaction"):
            await append_event(
                session,
                "cart",
                uuid.uuid4(),
                "cart.x",
                StockChanged(variant_id=uuid.uuid4(), total_stock=1),
            )
