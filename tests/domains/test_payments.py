"""Idempotency keys: the same key for another request is refused before anything is sent."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from domains.payments import service
from domains.payments.errors import IdempotencyKeyReused
from domains.payments.models import PaymentIdempotencyKey
from kit.db import DomainDatabase


async def test_same_key_same_request_is_accepted_again(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    key = service.idempotency_key(uuid.uuid4(), "authorize")
    request = {"amount": 1999, "currency": "USD", "token": "tok_visa"}

    for _ in range(3):
        async with db.begin() as session:
            await service.open_call(session, key, dict(reversed(list(request.items()))))

    async with db.begin() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PaymentIdempotencyKey)
            .where(PaymentIdempotencyKey.key == key)
        )
    assert count == 1


async def test_same_key_another_request_is_refused(databases: dict[str, DomainDatabase]) -> None:
    db = databases["payments"]
    key = service.idempotency_key(uuid.uuid4(), "capture")
    async with db.begin() as session:
        await service.open_call(session, key, {"intent": "pi_1", "amount": "10.00"})

    with pytest.raises(IdempotencyKeyReused):
        async with db.begin() as session:
            await service.open_call(session, key, {"intent": "pi_1", "amount": "11.00"})
