"""Inventory reservations: all or nothing, idempotent per checkout, never oversold."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.inventory import service
from domains.inventory.errors import OutOfStock, StockBelowReserved
from kit.db import DomainDatabase

LATER = datetime.now(UTC) + timedelta(hours=1)


async def _item(db: DomainDatabase, stock: int) -> uuid.UUID:
    variant_id = uuid.uuid4()
    async with db.begin() as session:
        await service.set_stock(session, variant_id, uuid.uuid4(), stock)
    return variant_id


async def _reserve(
    db: DomainDatabase, checkout_id: uuid.UUID, *lines: tuple[uuid.UUID, int]
) -> None:
    async with db.begin() as session:
        await service.reserve(
            session, checkout_id, [service.Line(uuid.uuid4(), v, q) for v, q in lines], LATER
        )


async def _levels(db: DomainDatabase, variant_id: uuid.UUID) -> tuple[int, int]:
    async with db.begin() as session:
        item = await service.get_stock(session, variant_id)
        return item.total_stock, item.reserved


async def test_a_short_line_reserves_nothing(databases: dict[str, DomainDatabase]) -> None:
    db = databases["inventory"]
    plenty, scarce = await _item(db, 10), await _item(db, 1)

    with pytest.raises(OutOfStock):
        await _reserve(db, uuid.uuid4(), (plenty, 3), (scarce, 2))

    assert await _levels(db, plenty) == (10, 0)
    assert await _levels(db, scarce) == (1, 0)


async def test_reserving_again_for_the_same_checkout_changes_nothing(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["inventory"]
    variant = await _item(db, 5)
    checkout_id = uuid.uuid4()

    await _reserve(db, checkout_id, (variant, 2))
    await _reserve(db, checkout_id, (variant, 2))
    # Two attempts of one step at once (a retry racing a slow first attempt).
    await asyncio.gather(
        _reserve(db, checkout_id, (variant, 2)), _reserve(db, checkout_id, (variant, 2))
    )

    assert await _levels(db, variant) == (5, 2)


async def test_concurrent_checkouts_never_oversell(databases: dict[str, DomainDatabase]) -> None:
    db = databases["inventory"]
    variant = await _item(db, 7)

    results = await asyncio.gather(
        *(_reserve(db, uuid.uuid4(), (variant, 1)) for _ in range(25)), return_exceptions=True
    )

    assert sum(1 for r in results if r is None) == 7
    assert all(isinstance(r, OutOfStock) for r in results if r is not None)
    assert await _levels(db, variant) == (7, 7)


async def test_release_and_commit(databases: dict[str, DomainDatabase]) -> None:
    db = databases["inventory"]
    variant = await _item(db, 10)
    sold, dropped = uuid.uuid4(), uuid.uuid4()
    await _reserve(db, sold, (variant, 3))
    await _reserve(db, dropped, (variant, 4))

    async with db.begin() as session:
        assert await service.commit(session, sold, uuid.uuid4()) == 1
        assert await service.release(session, dropped) == 1
        assert await service.release(session, dropped) == 0  # nothing left to undo

    assert await _levels(db, variant) == (7, 0)
    async with db.begin() as session:
        assert await service.release(session, sold, restock=True) == 1
    assert await _levels(db, variant) == (10, 0)


async def test_stock_cannot_drop_below_what_is_held(databases: dict[str, DomainDatabase]) -> None:
    db = databases["inventory"]
    variant = await _item(db, 5)
    await _reserve(db, uuid.uuid4(), (variant, 4))

    with pytest.raises(StockBelowReserved):
        async with db.begin() as session:
            await service.set_stock(session, variant, uuid.uuid4(), 3)

    assert await _levels(db, variant) == (5, 4)


async def test_commit_moves_only_active_reservations(databases: dict[str, DomainDatabase]) -> None:
    """Committing twice, or after a release, changes nothing (the guard is in the UPDATE)."""
    db = databases["inventory"]
    variant = await _item(db, 10)
    sold, dropped = uuid.uuid4(), uuid.uuid4()
    await _reserve(db, sold, (variant, 3))
    await _reserve(db, dropped, (variant, 4))
    order_id = uuid.uuid4()

    async with db.begin() as session:
        assert await service.commit(session, sold, order_id) == 1
    async with db.begin() as session:
        assert await service.commit(session, sold, uuid.uuid4()) == 0
        assert await service.release(session, dropped) == 1
    async with db.begin() as session:
        assert await service.commit(session, dropped, uuid.uuid4()) == 0

    assert await _levels(db, variant) == (7, 0)
    async with db.begin() as session:
        assert await service.release(session, sold) == 0  # committed: only a restock moves it


async def test_concurrent_commits_of_one_checkout_take_stock_once(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["inventory"]
    first, second = await _item(db, 5), await _item(db, 5)
    checkout_id = uuid.uuid4()
    await _reserve(db, checkout_id, (first, 2), (second, 1))

    async def commit() -> int:
        async with db.begin() as session:
            return await service.commit(session, checkout_id, uuid.uuid4())

    assert sorted(await asyncio.gather(*(commit() for _ in range(4)))) == [0, 0, 0, 2]
    assert await _levels(db, first) == (3, 0)
    assert await _levels(db, second) == (4, 0)


async def test_concurrent_multi_line_checkouts_respect_every_line(
    databases: dict[str, DomainDatabase],
) -> None:
    """Checkouts taking two variants in opposite orders neither deadlock nor oversell."""
    db = databases["inventory"]
    a, b = await _item(db, 6), await _item(db, 4)

    results = await asyncio.gather(
        *(
            _reserve(db, uuid.uuid4(), *([(a, 1), (b, 1)] if i % 2 else [(b, 1), (a, 1)]))
            for i in range(12)
        ),
        return_exceptions=True,
    )

    assert sum(1 for r in results if r is None) == 4
    assert all(isinstance(r, OutOfStock) for r in results if r is not None)
    assert await _levels(db, a) == (6, 4)
    assert await _levels(db, b) == (4, 4)


async def test_a_retry_returns_the_reservations_of_the_first_attempt(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["inventory"]
    a, b = await _item(db, 5), await _item(db, 5)
    checkout_id = uuid.uuid4()
    lines = [service.Line(uuid.uuid4(), a, 1), service.Line(uuid.uuid4(), b, 2)]

    async with db.begin() as session:
        first = await service.reserve(session, checkout_id, lines, LATER)
    async with db.begin() as session:
        again = await service.reserve(session, checkout_id, [*lines, lines[0]], LATER)

    assert [r.id for r in again] == [r.id for r in first]
    assert [r.quantity for r in first] == ([1, 2] if a < b else [2, 1])
    assert await _levels(db, a) == (5, 1)
    assert await _levels(db, b) == (5, 2)


_LINES = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2), st.integers(min_value=1, max_value=3)),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stocks=st.lists(st.integers(min_value=0, max_value=6), min_size=3, max_size=3),
    checkouts=st.lists(_LINES, min_size=1, max_size=8),
)
async def test_concurrent_reserve_commit_and_release_keep_the_books(
    stocks: list[int],
    checkouts: list[list[tuple[int, int]]],
    databases: dict[str, DomainDatabase],
) -> None:
    """Checkouts of random lines at once: each reserves all its lines or none, never more than
    the stock, without deadlocks; then half commit and half release, at once too."""
    db = databases["inventory"]
    variants = [await _item(db, stock) for stock in stocks]
    ids = [uuid.uuid4() for _ in checkouts]
    lines = [[(variants[v], q) for v, q in spec] for spec in checkouts]

    results = await asyncio.gather(
        *(_reserve(db, c, *ls) for c, ls in zip(ids, lines, strict=True)),
        return_exceptions=True,
    )
    assert all(r is None or isinstance(r, OutOfStock) for r in results), results
    held = [(c, ls) for c, ls, r in zip(ids, lines, results, strict=True) if r is None]

    def wanted(
        variant: uuid.UUID, among: list[tuple[uuid.UUID, list[tuple[uuid.UUID, int]]]]
    ) -> int:
        return sum(q for _, ls in among for v, q in ls if v == variant)

    for variant, stock in zip(variants, stocks, strict=True):
        assert await _levels(db, variant) == (stock, wanted(variant, held))

    sold, dropped = held[::2], held[1::2]

    async def settle(checkout_id: uuid.UUID, sell: bool) -> int:
        async with db.begin() as session:
            if sell:
                return await service.commit(session, checkout_id, uuid.uuid4())
            return await service.release(session, checkout_id)

    await asyncio.gather(
        *(settle(c, True) for c, _ in sold), *(settle(c, False) for c, _ in dropped)
    )
    for variant, stock in zip(variants, stocks, strict=True):
        assert await _levels(db, variant) == (stock - wanted(variant, sold), 0)
