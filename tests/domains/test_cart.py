"""Cart locks: held by one checkout at a time, and never again by a checkout that released it."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from domains.cart import service
from kit.db import DomainDatabase
from kit.errors import DomainError
from kit.money import Money
from tools.seed import SeededVariant


async def _cart(db: DomainDatabase) -> tuple[uuid.UUID, uuid.UUID]:
    """A fresh user's active cart with one line (the variant need not exist elsewhere)."""
    user_id = uuid.uuid4()
    variant = SeededVariant(
        uuid.uuid4(), uuid.uuid4(), "SKU-CART", Money.of("5", "USD"), uuid.uuid4()
    )
    async with db.begin() as session:
        cart = await service.create_cart(session, user_id, "USD")
        await service.add_item(session, cart.id, user_id, variant, 1)
    return cart.id, user_id


async def _lock(
    db: DomainDatabase, cart_id: uuid.UUID, user_id: uuid.UUID, checkout: uuid.UUID
) -> None:
    async with db.begin() as session:
        await service.lock_for_checkout(session, cart_id, user_id, checkout)


async def _unlock(db: DomainDatabase, cart_id: uuid.UUID, checkout: uuid.UUID) -> bool:
    async with db.begin() as session:
        return await service.unlock(session, cart_id, checkout)


async def _status(
    db: DomainDatabase, cart_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[str, uuid.UUID | None]:
    async with db.begin() as session:
        cart, _ = await service.get_cart(session, cart_id, user_id)
        return cart.status, cart.checkout_id


async def _assert_late_lock_refused(
    db: DomainDatabase, cart_id: uuid.UUID, user_id: uuid.UUID, checkout: uuid.UUID
) -> None:
    """The checkout's lock attempt is refused with `cart_released`, and the cart stays free."""
    with pytest.raises(DomainError) as refused:
        await _lock(db, cart_id, user_id, checkout)
    assert refused.value.code == "cart_released"
    assert await _status(db, cart_id, user_id) == ("active", None)


async def test_a_late_lock_attempt_cannot_take_back_a_cart_its_checkout_released(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    checkout = uuid.uuid4()
    await _lock(db, cart_id, user_id, checkout)
    await _lock(db, cart_id, user_id, checkout)  # a retry of the same step is a no-op
    assert await _unlock(db, cart_id, checkout)

    # The abandoned first attempt of lock_cart commits only now, after the compensation.
    await _assert_late_lock_refused(db, cart_id, user_id, checkout)

    # Another checkout of the same cart is not affected.
    other = uuid.uuid4()
    await _lock(db, cart_id, user_id, other)
    assert await _status(db, cart_id, user_id) == ("locked", other)


async def test_a_lock_attempt_arriving_after_an_unlock_that_found_nothing_is_refused(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    checkout = uuid.uuid4()
    # The compensation ran while the only attempt of lock_cart had not reached the database.
    assert not await _unlock(db, cart_id, checkout)

    await _assert_late_lock_refused(db, cart_id, user_id, checkout)

    # The compensation stays idempotent: unlocking again has nothing to do.
    assert not await _unlock(db, cart_id, checkout)


async def test_a_lock_waiting_behind_its_own_unlock_is_refused_when_the_unlock_commits(
    databases: dict[str, DomainDatabase],
) -> None:
    """The lock attempt's UPDATE started before the unlock committed and waited for the cart's
    row: the release it could not see then is read after the row lock, and wins."""
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    checkout = uuid.uuid4()

    async with db.begin() as session:
        assert not await service.unlock(session, cart_id, checkout)  # holds the cart's row lock
        late = asyncio.create_task(_lock(db, cart_id, user_id, checkout))
        await asyncio.sleep(0.5)
        assert not late.done()  # waiting for the row

    with pytest.raises(DomainError) as refused:
        await late
    assert refused.value.code == "cart_released"
    assert await _status(db, cart_id, user_id) == ("active", None)


async def test_a_lock_returns_the_lines_and_a_retry_the_same(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    checkout = uuid.uuid4()

    async with db.begin() as session:
        first = await service.lock_for_checkout(session, cart_id, user_id, checkout)
    async with db.begin() as session:
        again = await service.lock_for_checkout(session, cart_id, user_id, checkout)

    assert first == again
    assert first.currency == "USD"
    assert [(line.sku, line.quantity, line.unit_price) for line in first.lines] == [
        ("SKU-CART", 1, Decimal("5"))
    ]
    assert await _status(db, cart_id, user_id) == ("locked", checkout)


async def test_a_cart_held_by_one_checkout_is_refused_to_another_and_to_a_stranger(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    holder = uuid.uuid4()
    await _lock(db, cart_id, user_id, holder)

    with pytest.raises(DomainError) as held:
        await _lock(db, cart_id, user_id, uuid.uuid4())
    with pytest.raises(DomainError) as stranger:
        await _lock(db, cart_id, uuid.uuid4(), holder)

    assert (held.value.code, stranger.value.code) == ("cart_locked", "cart_not_found")
    assert await _status(db, cart_id, user_id) == ("locked", holder)


async def test_an_empty_cart_is_not_locked(databases: dict[str, DomainDatabase]) -> None:
    db = databases["cart"]
    user_id = uuid.uuid4()
    async with db.begin() as session:
        cart_id = (await service.create_cart(session, user_id, "USD")).id

    with pytest.raises(DomainError) as empty:
        await _lock(db, cart_id, user_id, uuid.uuid4())

    assert empty.value.code == "cart_empty"
    assert await _status(db, cart_id, user_id) == ("active", None)


async def test_only_the_holding_checkout_converts_the_cart_and_twice_is_once(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["cart"]
    cart_id, user_id = await _cart(db)
    holder = uuid.uuid4()
    await _lock(db, cart_id, user_id, holder)

    with pytest.raises(DomainError) as other:
        async with db.begin() as session:
            await service.mark_converted(session, cart_id, uuid.uuid4())
    for _ in range(2):
        async with db.begin() as session:
            await service.mark_converted(session, cart_id, holder)

    assert other.value.code == "cart_locked"
    assert await _status(db, cart_id, user_id) == ("converted", holder)
