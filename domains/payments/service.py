"""Payments as the platform records them, next to what the provider says.

A provider call is bracketed by two short transactions, never one held across the network:
`open_call` records the idempotency key (refusing a key reused for another request) and
`record_*` stores the answer with its transaction row and outbox event.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, UpdateBase, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.payments.errors import IdempotencyKeyReused, PaymentNotFound, UnknownIntentStatus
from domains.payments.events import AGGREGATE, PaymentChanged
from domains.payments.models import (
    Payment,
    PaymentIdempotencyKey,
    PaymentTransaction,
    PaymentWebhookEvent,
)
from domains.payments.provider import Intent
from domains.payments.statuses import (
    INTENT_TO_PAYMENT,
    PaymentStatus,
    TransactionStatus,
    TransactionType,
)
from kit.db import insert_if_absent, insert_or_get, written
from kit.errors import DomainError
from kit.money import Money
from kit.outbox import NewEvent, write_with_events

RowT = TypeVar("RowT")

# Stripe keeps an idempotency key for at least 24 hours; a request under an older key runs again
# (a create makes a second object). A call whose key is older than this margin first looks for
# what an earlier attempt may have made (the provider's search can lag by up to an hour).
PROVIDER_KEY_TTL = timedelta(hours=24)
KEY_MAY_HAVE_EXPIRED = PROVIDER_KEY_TTL - timedelta(hours=1)


def payment_status(intent: Intent) -> PaymentStatus:
    """The payment status an intent's status means; UnknownIntentStatus for one the platform
    does not know (never a guess: it is retried and counted until the mapping learns it)."""
    try:
        return INTENT_TO_PAYMENT[intent.status]
    except KeyError:
        raise UnknownIntentStatus(intent.status, intent.id) from None


def idempotency_key(checkout_id: uuid.UUID, operation: str) -> str:
    """The provider key of one operation of one checkout: `<checkout_id>:<operation>`."""
    return f"{checkout_id}:{operation}"


def request_hash(request: dict[str, Any]) -> str:
    """A stable fingerprint of a request body."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def open_call(session: AsyncSession, key: str, request: dict[str, Any]) -> None:
    """Record `key` for `request`; IdempotencyKeyReused if it was used for another request."""
    fingerprint = request_hash(request)
    stored, _ = await insert_or_get(
        session,
        PaymentIdempotencyKey,
        {"id": uuid.uuid4(), "key": key, "request_hash": fingerprint},
        key=[PaymentIdempotencyKey.key],
    )
    if stored.request_hash != fingerprint:
        raise IdempotencyKeyReused("this idempotency key was used for another request", key=key)


async def key_age(session: AsyncSession, key: str) -> timedelta | None:
    """How long ago `key` was first recorded (by the database's clock), None if never."""
    age: timedelta | None = await session.scalar(
        select(func.now() - PaymentIdempotencyKey.created_at).where(
            PaymentIdempotencyKey.key == key
        )
    )
    return age


async def ensure_payment(
    session: AsyncSession,
    *,
    checkout_id: uuid.UUID,
    order_id: uuid.UUID,
    amount: Money,
    provider: str,
) -> Payment:
    """The checkout's payment row, created `pending` on first use (unique `checkout_id`)."""
    payment, _ = await insert_or_get(
        session,
        Payment,
        {
            "id": uuid.uuid4(),
            "checkout_id": checkout_id,
            "order_id": order_id,
            "status": PaymentStatus.PENDING.value,
            "amount": amount.amount,
            "currency": amount.currency,
            "provider": provider,
        },
        key=[Payment.checkout_id],
        lock=True,
    )
    return payment


async def one_row(
    session: AsyncSession, query: Select[RowT], missing: DomainError, *, lock: bool = False
) -> RowT:
    """The row `query` selects (locked for update if asked); `missing` raised when there is none."""
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise missing
    return row


async def payment_for_checkout(
    session: AsyncSession, checkout_id: uuid.UUID, *, lock: bool = False
) -> Payment:
    """The checkout's payment."""
    missing = PaymentNotFound("no payment for this checkout", checkout_id=str(checkout_id))
    query = select(Payment).where(Payment.checkout_id == checkout_id)
    return await one_row(session, query, missing, lock=lock)


async def find_payment(session: AsyncSession, checkout_id: uuid.UUID) -> Payment | None:
    """The checkout's payment, locked, or None if it never got one."""
    return await session.scalar(
        select(Payment).where(Payment.checkout_id == checkout_id).with_for_update()
    )


async def checkout_of_intent(session: AsyncSession, intent_id: str) -> uuid.UUID | None:
    """The checkout whose payment is the provider's intent `intent_id`, if any."""
    return await session.scalar(
        select(Payment.checkout_id).where(Payment.provider_payment_id == intent_id)
    )


async def apply_intent(
    session: AsyncSession,
    payment: Payment,
    intent: Intent,
    *,
    key: str,
    kind: TransactionType,
    amount: Money | None = None,
    succeeded: bool = True,
    error_code: str | None = None,
) -> Payment:
    """Mirror the provider's intent on `payment` and record the call as a transaction.

    One statement: the payment's UPDATE, the transaction row (upserted by idempotency key), the
    key's completion and the event when the status changed.
    """
    values = _mirrored(payment, intent, error_code)
    txn_amount = amount.amount if amount is not None else payment.amount
    txn_status = (TransactionStatus.SUCCEEDED if succeeded else TransactionStatus.FAILED).value
    transaction = (
        insert(PaymentTransaction)
        .values(
            id=uuid.uuid4(),
            payment_id=payment.id,
            provider_txn_id=intent.id,
            type=kind.value,
            amount=txn_amount,
            status=txn_status,
            idempotency_key=key,
            error_code=values["last_error_code"] if not succeeded else None,
        )
        .on_conflict_do_update(
            index_elements=[PaymentTransaction.idempotency_key],
            set_={"status": txn_status, "provider_txn_id": intent.id},
        )
    )
    completed = (
        update(PaymentIdempotencyKey)
        .where(PaymentIdempotencyKey.key == key)
        .values(response={"id": intent.id, "status": intent.status}, completed_at=datetime.now(UTC))
    )
    await _write(session, payment, values, [transaction, completed])
    return payment


async def record_refusal(session: AsyncSession, payment: Payment, code: str) -> Payment:
    """The provider refused the payment details outright: no intent exists, nothing is held."""
    values = {"status": PaymentStatus.FAILED.value, "last_error_code": code}
    await _write(session, payment, values)
    return payment


async def mirror_intent(
    session: AsyncSession, payment: Payment, intent: Intent, *, error_code: str | None = None
) -> Payment:
    """Make `payment` say what the provider's intent says (status, captured, refunded)."""
    await _write(session, payment, _mirrored(payment, intent, error_code))
    return payment


def _mirrored(payment: Payment, intent: Intent, error_code: str | None) -> dict[str, Any]:
    """The payment's columns as the provider's intent says they are."""
    status = payment_status(intent)
    if intent.amount_refunded and intent.amount_refunded >= intent.amount_received > 0:
        status = PaymentStatus.REFUNDED
    elif status == PaymentStatus.CAPTURED and payment.status == PaymentStatus.DISPUTED.value:
        # The intent says nothing of disputes: a disputed payment stays so until its dispute ends.
        status = PaymentStatus.DISPUTED
    return {
        "status": status.value,
        "provider_payment_id": intent.id,
        "captured_amount": Money.from_minor_units(intent.amount_received, payment.currency).amount,
        "refunded_amount": Money.from_minor_units(intent.amount_refunded, payment.currency).amount,
        "last_error_code": error_code or intent.last_error_code,
    }


async def set_status(session: AsyncSession, payment: Payment, status: PaymentStatus) -> None:
    """Put `payment` (locked by the caller) in `status`, with its event when it changes."""
    await _write(session, payment, {"status": status.value})


# Statuses a captured payment can leave and come back from: a refund that failed at the provider
# (the money back on the charge), a dispute won.
CAPTURED_AGAIN_FROM = frozenset({PaymentStatus.REFUNDED.value, PaymentStatus.DISPUTED.value})


def _event_type(previous: str, status: str) -> str:
    """`payment.<status>`, except that a payment back at `captured` is `payment.restored`: it was
    not captured again, and nobody may announce a second capture (a buyer's notification)."""
    if status == PaymentStatus.CAPTURED.value and previous in CAPTURED_AGAIN_FROM:
        return "payment.restored"
    return f"payment.{status}"


async def _write(
    session: AsyncSession,
    payment: Payment,
    values: dict[str, Any],
    also: Sequence[UpdateBase] = (),
) -> None:
    """Write `values` on `payment` (locked by the caller) with the statements `also`, and the
    `payment.<status>` event when its status changes, as one statement; `payment` says the new
    values afterwards (its `updated_at` expired when they changed it)."""
    changed = {k: v for k, v in values.items() if getattr(payment, k) != v}
    previous = payment.status
    written(session, payment, changed, expire=["updated_at"] if changed else ())
    events = []
    if payment.status != previous:
        event = PaymentChanged.model_validate(payment, from_attributes=True)
        events.append(NewEvent(AGGREGATE, payment.id, _event_type(previous, payment.status), event))
    update_row = update(Payment).where(Payment.id == payment.id).values(**changed)
    await write_with_events(session, [*([update_row] if changed else []), *also], events)


async def record_webhook(
    session: AsyncSession,
    *,
    provider: str,
    webhook_id: str,
    event_type: str,
    intent_id: str | None,
    checkout_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> bool:
    """Put a verified webhook in the inbox; False if this `webhook-id` arrived before."""
    inserted = await insert_if_absent(
        session,
        PaymentWebhookEvent,
        {
            "id": uuid.uuid4(),
            "provider": provider,
            "webhook_id": webhook_id,
            "event_type": event_type,
            "intent_id": intent_id,
            "checkout_id": checkout_id,
            "payload": payload,
        },
        key=[PaymentWebhookEvent.provider, PaymentWebhookEvent.webhook_id],
    )
    return inserted is not None
