"""Payment records: the payment mirrors the provider's intent, each call is one transaction row
per key, each status change one event, and an unchanged intent writes nothing."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text

from domains.payments import service
from domains.payments.models import PaymentIdempotencyKey, PaymentTransaction
from domains.payments.provider import Intent
from domains.payments.statuses import TransactionType
from kit.db import DomainDatabase
from kit.money import Money


def _intent(
    checkout_id: uuid.UUID,
    status: str,
    *,
    received: int = 0,
    refunded: int = 0,
    error: str | None = None,
) -> Intent:
    return Intent(
        id=f"pi_{checkout_id.hex}",
        status=status,
        amount=2500,
        currency="eur",
        amount_capturable=2500 if status == "requires_capture" else 0,
        amount_received=received,
        amount_refunded=refunded,
        redirect_url=None,
        last_error_code=error,
    )


async def _payment(db: DomainDatabase) -> uuid.UUID:
    checkout_id = uuid.uuid4()
    async with db.begin() as session:
        await service.open_call(session, service.idempotency_key(checkout_id, "authorize"), {})
        await service.ensure_payment(
            session,
            checkout_id=checkout_id,
            order_id=uuid.uuid4(),
            amount=Money.of("25.00", "EUR"),
            provider="sandbox",
        )
    return checkout_id


async def _apply(
    db: DomainDatabase, checkout_id: uuid.UUID, intent: Intent, operation: str, **kw: Any
) -> str:
    kind = TransactionType.AUTHORIZE if operation == "authorize" else TransactionType.CAPTURE
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        key = service.idempotency_key(checkout_id, operation)
        await service.apply_intent(session, payment, intent, key=key, kind=kind, **kw)
        return payment.status


async def _recorded(db: DomainDatabase, checkout_id: uuid.UUID) -> dict[str, Any]:
    """The payment's row, its transactions, its events and its keys' completion."""
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id)
        transactions = await session.execute(
            select(
                PaymentTransaction.type, PaymentTransaction.status, PaymentTransaction.error_code
            )
            .where(PaymentTransaction.payment_id == payment.id)
            .order_by(PaymentTransaction.type)
        )
        events = await session.scalars(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :p ORDER BY seq"
            ),
            {"p": payment.id},
        )
        completed = await session.scalars(
            select(PaymentIdempotencyKey.response["status"].astext)
            .where(PaymentIdempotencyKey.key.startswith(str(checkout_id)))
            .order_by(PaymentIdempotencyKey.key)
        )
        return {
            "payment": (payment.status, payment.captured_amount, payment.last_error_code),
            "transactions": [tuple(row) for row in transactions],
            "events": list(events),
            "completed": list(completed),
        }


async def test_authorize_then_capture_is_recorded_once_per_key(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _payment(db)

    for _ in range(2):  # a retried step records the same again: no new row, no new event
        assert await _apply(
            db, checkout_id, _intent(checkout_id, "requires_capture"), "authorize"
        ) == ("authorized")
    async with db.begin() as session:
        key = service.idempotency_key(checkout_id, "capture")
        await service.open_call(session, key, {"intent": f"pi_{checkout_id.hex}"})
    captured = _intent(checkout_id, "succeeded", received=2500)
    assert await _apply(db, checkout_id, captured, "capture") == "captured"

    assert await _recorded(db, checkout_id) == {
        "payment": ("captured", Decimal("25.00"), None),
        "transactions": [("authorize", "succeeded", None), ("capture", "succeeded", None)],
        "events": ["payment.authorized", "payment.captured"],
        "completed": ["requires_capture", "succeeded"],
    }


async def test_a_declined_authorization_records_the_reason(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _payment(db)
    # As at Stripe: a declined confirmation leaves the intent waiting for another method.
    declined = _intent(checkout_id, "requires_payment_method", error="card_declined")

    status = await _apply(
        db, checkout_id, declined, "authorize", succeeded=False, error_code="insufficient_funds"
    )

    assert status == "failed"
    recorded = await _recorded(db, checkout_id)
    assert recorded["payment"] == ("failed", Decimal("0"), "insufficient_funds")
    assert recorded["transactions"] == [("authorize", "failed", "insufficient_funds")]
    assert recorded["events"] == ["payment.failed"]


async def test_mirroring_an_unchanged_intent_writes_nothing(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _payment(db)
    await _apply(db, checkout_id, _intent(checkout_id, "requires_capture"), "authorize")
    async with db.begin() as session:
        before = (await service.payment_for_checkout(session, checkout_id)).updated_at

    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        await service.mirror_intent(session, payment, _intent(checkout_id, "requires_capture"))
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        await service.record_refusal(session, payment, "expired_card")

    recorded = await _recorded(db, checkout_id)
    assert recorded["events"] == ["payment.authorized", "payment.failed"]
    assert recorded["payment"] == ("failed", Decimal("0"), "expired_card")
    async with db.begin() as session:
        assert (await service.payment_for_checkout(session, checkout_id)).updated_at > before


async def test_a_payment_back_at_captured_is_restored_not_captured_again(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _payment(db)
    captured = _intent(checkout_id, "succeeded", received=2500)
    refunded = _intent(checkout_id, "succeeded", received=2500, refunded=2500)

    # Captured, refunded, then the refund failed at the provider: the money is back.
    for intent in (captured, refunded, captured):
        async with db.begin() as session:
            payment = await service.payment_for_checkout(session, checkout_id, lock=True)
            await service.mirror_intent(session, payment, intent)

    recorded = await _recorded(db, checkout_id)
    assert recorded["payment"][0] == "captured"
    # One capture announced (one buyer notification), then the refund and its undoing.
    assert recorded["events"] == ["payment.captured", "payment.refunded", "payment.restored"]
