"""Refunds and disputes as the payments domain records them: a status only moves forward (an
older re-read changes nothing), each change is one event, the platform's own record of a refund
wins over a webhook's guess, and a dispute moves the payment to `disputed` and back."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text

from domains.payments import aftersale, service
from domains.payments.provider import Dispute, Refund
from kit.db import DomainDatabase
from tests.domains.test_payment_records import _apply, _intent, _payment


async def _captured(db: DomainDatabase) -> uuid.UUID:
    checkout_id = await _payment(db)
    await _apply(db, checkout_id, _intent(checkout_id, "succeeded", received=2500), "capture")
    return checkout_id


async def _record(
    db: DomainDatabase, checkout_id: uuid.UUID, *refunds: Refund, ours: tuple[str, ...] = ()
) -> list[str]:
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        changed = await aftersale.record_refunds(session, payment, refunds, ours=ours)
        return [row.status for row in changed]


async def _events(db: DomainDatabase, checkout_id: uuid.UUID, prefix: str) -> list[str]:
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id)
        rows = await session.execute(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :p ORDER BY seq"
            ),
            {"p": payment.id},
        )
        return [name for name in rows.scalars() if name.startswith(prefix)]


def _refund(status: str, amount: int = 500, refund_id: str = "re_1") -> Refund:
    return Refund(id=refund_id, amount=amount, currency="EUR", status=status)


async def test_a_refund_moves_forward_only_and_once_per_change(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    refund_id = f"re_{uuid.uuid4().hex}"
    assert await _record(db, checkout_id, _refund("pending", refund_id=refund_id)) == ["pending"]
    assert await _record(db, checkout_id, _refund("pending", refund_id=refund_id)) == []
    assert await _record(db, checkout_id, _refund("failed", refund_id=refund_id)) == ["failed"]
    # An older re-read (still pending, or succeeded) arriving late changes nothing.
    assert await _record(db, checkout_id, _refund("pending", refund_id=refund_id)) == []
    assert await _record(db, checkout_id, _refund("succeeded", refund_id=refund_id)) == []
    assert await _events(db, checkout_id, "payment.refund_") == [
        "payment.refund_pending",
        "payment.refund_failed",
    ]
    async with db.begin() as session:
        waiting = [v.refund.provider_refund_id for v in await aftersale.waiting_refunds(session)]
        payment = await service.payment_for_checkout(session, checkout_id)
        assert await aftersale.refunded_total(session, payment.id) == Decimal(0)
    assert refund_id in waiting


async def test_the_platforms_record_of_a_refund_wins_over_a_webhooks_guess(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    refund_id = f"re_{uuid.uuid4().hex}"
    await _record(db, checkout_id, _refund("succeeded", 2500, refund_id))
    await _record(db, checkout_id, _refund("succeeded", 2500, refund_id), ours=(refund_id,))
    async with db.begin() as session:
        origin = await session.scalar(
            text("SELECT origin FROM payment_refunds WHERE provider_refund_id = :r"),
            {"r": refund_id},
        )
        payment = await service.payment_for_checkout(session, checkout_id)
        assert await aftersale.refunded_total(session, payment.id) == Decimal("25.00")
    assert origin == "platform"


def _dispute(intent_id: str, status: str) -> Dispute:
    return Dispute(
        id=f"dp_{intent_id}",
        intent_id=intent_id,
        amount=2500,
        currency="EUR",
        reason="fraudulent",
        status=status,
        evidence_due_by=1_900_000_000,
    )


async def _disputed(db: DomainDatabase, checkout_id: uuid.UUID, status: str) -> str:
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        await aftersale.record_dispute(session, payment, _dispute(f"pi_{checkout_id.hex}", status))
        return payment.status


async def test_a_dispute_moves_the_payment_and_a_decided_one_stays_decided(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    assert await _disputed(db, checkout_id, "needs_response") == "disputed"
    assert await _disputed(db, checkout_id, "needs_response") == "disputed"
    # A re-read of the intent keeps the payment disputed while the dispute is open.
    status = await _apply(db, checkout_id, _intent(checkout_id, "succeeded", received=2500), "x")
    assert status == "disputed"
    assert await _disputed(db, checkout_id, "under_review") == "disputed"
    assert await _disputed(db, checkout_id, "won") == "captured"
    assert await _disputed(db, checkout_id, "needs_response") == "captured"  # decided is final
    assert await _events(db, checkout_id, "payment.dispute_") == [
        "payment.dispute_opened",
        "payment.dispute_updated",
        "payment.dispute_closed",
    ]


async def test_a_dispute_first_seen_lost_leaves_the_payment_disputed(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    assert await _disputed(db, checkout_id, "lost") == "disputed"
