"""Money after the sale: every refund (the platform's or one made in the provider's dashboard)
and every dispute, recorded as the provider reports them, each change with its event.

The provider is the source of truth: callers re-read the intent (and the dispute) through the
provider and hand the answer here, never an event's copy. A refund's status only moves forward
(a re-read older than the last one cannot undo it); a failed refund waits for an operator, who
retries it or resolves it with a note.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.payments import service
from domains.payments.errors import (
    RefundExceedsCaptured,
    RefundNotFailed,
    RefundNotFound,
    RefundOwnedByReturn,
)
from domains.payments.events import AGGREGATE
from domains.payments.models import Payment, PaymentDispute, PaymentRefund, PaymentRefundRequest
from domains.payments.provider import Dispute, Refund
from domains.payments.refunds import refundable, return_of
from domains.payments.statuses import (
    DISPUTE_CLOSED,
    REFUND_FINAL,
    DisputeStatus,
    PaymentStatus,
    RefundOrigin,
    RefundPurpose,
    RefundResolution,
    RefundStatus,
)
from kit.money import Money
from kit.outbox import NewEvent, write_with_events


class RefundChanged(BaseModel):
    """`payment.refund_<status>` (pending, succeeded, failed, canceled): one refund, and what
    the payment's succeeded refunds add up to now (`refunded_total`)."""

    refund_id: uuid.UUID
    provider_refund_id: str
    payment_id: uuid.UUID
    checkout_id: uuid.UUID
    order_id: uuid.UUID | None
    amount: Decimal
    currency: str
    status: str
    origin: str
    failure_reason: str | None
    refunded_total: Decimal
    captured_amount: Decimal
    # A checkout's or an order cancellation's own refund: their owner moves the order's status.
    compensation: bool = False


class DisputeChanged(BaseModel):
    """`payment.dispute_opened`, `payment.dispute_updated`, `payment.dispute_closed`."""

    dispute_id: uuid.UUID
    provider_dispute_id: str
    payment_id: uuid.UUID
    checkout_id: uuid.UUID
    order_id: uuid.UUID | None
    amount: Decimal
    currency: str
    reason: str
    status: str
    evidence_due_by: datetime | None


def _may_move(current: str, to: str) -> bool:
    """Pending moves anywhere; a succeeded refund can still fail or be canceled; failed and
    canceled are final."""
    if current == to:
        return False
    if current == RefundStatus.SUCCEEDED.value:
        return to in (RefundStatus.FAILED.value, RefundStatus.CANCELED.value)
    return RefundStatus(current) not in REFUND_FINAL


async def _refund_row(session: AsyncSession, provider_refund_id: str) -> PaymentRefund | None:
    return await session.scalar(
        select(PaymentRefund)
        .where(PaymentRefund.provider_refund_id == provider_refund_id)
        .with_for_update()
    )


async def record_refunds(
    session: AsyncSession,
    payment: Payment,
    refunds: Sequence[Refund],
    *,
    ours: Collection[str] = (),
    ids: Mapping[str, uuid.UUID] | None = None,
) -> list[PaymentRefund]:
    """Record the intent's refunds on `payment` (locked by the caller); those new or moved, each
    with its `payment.refund_<status>` event. A refund whose id is in `ours` was made by the
    platform; any other one was made in the provider's dashboard. A new refund named in `ids`
    gets that id (the refund request's, so both read as one refund)."""
    changed: list[tuple[PaymentRefund, Refund]] = []
    for refund in refunds:
        status = RefundStatus(refund.status).value  # an unknown status is refused, not guessed
        mine = refund.id in ours or refund.by_platform
        origin = RefundOrigin.PLATFORM if mine else RefundOrigin.DASHBOARD
        # Why: the metadata the platform wrote; none on one of ours means it was not readable.
        purpose = refund.purpose.value if refund.by_platform or not mine else None
        row = await _refund_row(session, refund.id)
        if row is None:
            row = PaymentRefund(
                id=(ids or {}).get(refund.id) or uuid.uuid4(),
                payment_id=payment.id,
                provider_refund_id=refund.id,
                amount=Money.from_minor_units(refund.amount, refund.currency).amount,
                currency=refund.currency,
                status=status,
                origin=origin.value,
                reason=refund.reason,
                failure_reason=refund.failure_reason,
                purpose=purpose,
            )
            session.add(row)
            changed.append((row, refund))
            continue
        if origin == RefundOrigin.PLATFORM:
            row.origin = origin.value  # the platform's own record wins over a webhook's guess
            if row.purpose == RefundPurpose.DASHBOARD.value:
                row.purpose = None
        if row.purpose is None:
            row.purpose = purpose  # learnt now (recorded before purposes were, or a guess)
        if _may_move(row.status, status):
            row.status = status
            row.failure_reason = refund.failure_reason
            changed.append((row, refund))
    await session.flush()
    total = await refunded_total(session, payment.id)
    events = [_refund_event(payment, row, refund, total) for row, refund in changed]
    await write_with_events(session, [], events)
    return [row for row, _ in changed]


def _refund_event(payment: Payment, row: PaymentRefund, refund: Refund, total: Decimal) -> NewEvent:
    payload = RefundChanged(
        refund_id=row.id,
        provider_refund_id=row.provider_refund_id,
        payment_id=payment.id,
        checkout_id=payment.checkout_id,
        order_id=payment.order_id,
        amount=row.amount,
        currency=row.currency,
        status=row.status,
        origin=row.origin,
        failure_reason=row.failure_reason,
        refunded_total=total,
        captured_amount=payment.captured_amount,
        compensation=refund.compensation,
    )
    return NewEvent(AGGREGATE, payment.id, f"payment.refund_{row.status}", payload)


async def refunded_total(session: AsyncSession, payment_id: uuid.UUID) -> Decimal:
    """What the payment's succeeded refunds add up to."""
    total = await session.scalar(
        select(func.coalesce(func.sum(PaymentRefund.amount), 0)).where(
            PaymentRefund.payment_id == payment_id,
            PaymentRefund.status == RefundStatus.SUCCEEDED.value,
        )
    )
    return Decimal(total or 0)


def _due_by(dispute: Dispute) -> datetime | None:
    if dispute.evidence_due_by is None:
        return None
    return datetime.fromtimestamp(dispute.evidence_due_by, UTC)


async def record_dispute(
    session: AsyncSession, payment: Payment, dispute: Dispute
) -> PaymentDispute | None:
    """Record `dispute` on `payment` (locked by the caller): the payment is `disputed` while it
    is open and `captured` again when it is won; a lost one leaves it `disputed` (the money went
    back to the buyer through the bank). The row when it is new or changed, with its event."""
    status = DisputeStatus(dispute.status)
    row = await session.scalar(
        select(PaymentDispute)
        .where(PaymentDispute.provider_dispute_id == dispute.id)
        .with_for_update()
    )
    values = {
        "amount": Money.from_minor_units(dispute.amount, dispute.currency).amount,
        "currency": dispute.currency,
        "reason": dispute.reason,
        "status": status.value,
        "evidence_due_by": _due_by(dispute),
    }
    if row is None:
        row = PaymentDispute(
            id=uuid.uuid4(), payment_id=payment.id, provider_dispute_id=dispute.id, **values
        )
        session.add(row)
        kind = "opened"
    elif _dispute_final(row.status) or all(getattr(row, k) == v for k, v in values.items()):
        return None
    else:
        for name, value in values.items():
            setattr(row, name, value)
        kind = "updated"
    if status in DISPUTE_CLOSED:
        kind = "closed"
    await session.flush()
    await _follow_dispute(session, payment, status)
    event = DisputeChanged(
        dispute_id=row.id,
        provider_dispute_id=row.provider_dispute_id,
        payment_id=payment.id,
        checkout_id=payment.checkout_id,
        order_id=payment.order_id,
        **values,
    )
    await write_with_events(
        session, [], [NewEvent(AGGREGATE, payment.id, f"payment.dispute_{kind}", event)]
    )
    return row


def _dispute_final(status: str) -> bool:
    return DisputeStatus(status) in DISPUTE_CLOSED


async def _follow_dispute(session: AsyncSession, payment: Payment, status: DisputeStatus) -> None:
    """The payment's status as the dispute leaves it: open or lost (even one first seen lost)
    → `disputed`; won, prevented or a warning closed → `captured` again."""
    if status not in DISPUTE_CLOSED or status == DisputeStatus.LOST:
        if payment.status == PaymentStatus.CAPTURED.value:
            await service.set_status(session, payment, PaymentStatus.DISPUTED)
    elif payment.status == PaymentStatus.DISPUTED.value:
        await service.set_status(session, payment, PaymentStatus.CAPTURED)


@dataclass(frozen=True)
class DisputeView:
    """A dispute with the payment it contests."""

    dispute: PaymentDispute
    payment: Payment


async def disputes(
    session: AsyncSession, *, open_only: bool = False, limit: int = 100
) -> list[DisputeView]:
    """Disputes, the nearest evidence deadline first (open ones only, if asked)."""
    query = (
        select(PaymentDispute, Payment)
        .join(Payment, Payment.id == PaymentDispute.payment_id)
        .order_by(PaymentDispute.evidence_due_by.asc().nulls_last(), PaymentDispute.id)
        .limit(limit)
    )
    if open_only:
        query = query.where(PaymentDispute.status.not_in([s.value for s in DISPUTE_CLOSED]))
    rows = await session.execute(query)
    return [DisputeView(dispute, payment) for dispute, payment in rows]


async def disputes_of_orders(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, PaymentDispute]:
    """Each order's newest dispute, for those whose payment was ever disputed."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(Payment.order_id, PaymentDispute)
        .join(Payment, Payment.id == PaymentDispute.payment_id)
        .where(Payment.order_id.in_(order_ids))
        .order_by(PaymentDispute.created_at)
    )
    return {order_id: dispute for order_id, dispute in rows if order_id is not None}


@dataclass(frozen=True)
class RefundView:
    """A refund with the payment it gives back, and the request it was made for (None for a
    refund no request asked for: a compensation, an operator's retry, a dashboard's)."""

    refund: PaymentRefund
    payment: Payment
    request: PaymentRefundRequest | None = None

    @property
    def purpose(self) -> str | None:
        """Why it was made (a `RefundPurpose` value): its request's purpose, else what the
        provider's metadata said; None for a refund recorded before purposes were."""
        return self.request.purpose if self.request is not None else self.refund.purpose

    @property
    def return_id(self) -> uuid.UUID | None:
        """The return that asked for it, if a return did."""
        return return_of(self.request)


def _views() -> Select[PaymentRefund, Payment, PaymentRefundRequest]:
    """Refunds with their payment and request, if any: the request names its provider refund
    once sent (the refund usually has the request's id too, but not when the provider's event
    about it was recorded first)."""
    return (
        select(PaymentRefund, Payment, PaymentRefundRequest)
        .join(Payment, Payment.id == PaymentRefund.payment_id)
        .outerjoin(
            PaymentRefundRequest,
            PaymentRefundRequest.provider_refund_id == PaymentRefund.provider_refund_id,
        )
    )


async def _view(
    session: AsyncSession, refund_id: uuid.UUID, *, lock: bool = False
) -> RefundView | None:
    """One refund with its payment and request (its row locked with `lock`); None if unknown."""
    query = _views().where(PaymentRefund.id == refund_id)
    if lock:
        query = query.with_for_update(of=PaymentRefund)
    found = (await session.execute(query)).one_or_none()
    return RefundView(*found) if found is not None else None


async def waiting_refunds(session: AsyncSession, limit: int = 100) -> list[RefundView]:
    """Failed refunds no operator has settled yet, oldest first."""
    rows = await session.execute(
        _views()
        .where(
            PaymentRefund.status == RefundStatus.FAILED.value,
            PaymentRefund.resolution.is_(None),
        )
        .order_by(PaymentRefund.created_at, PaymentRefund.id)
        .limit(limit)
    )
    return [RefundView(refund, payment, request) for refund, payment, request in rows]


async def failed_refund(
    session: AsyncSession, refund_id: uuid.UUID, *, settled_as: RefundResolution | None = None
) -> RefundView:
    """A failed refund still waiting for an operator (or already settled as `settled_as`: a
    repeated settlement is the same one), locked; RefundNotFound, RefundNotFailed otherwise."""
    return _still_failed(await _view(session, refund_id, lock=True), refund_id, settled_as)


async def retryable_refund(session: AsyncSession, refund_id: uuid.UUID) -> RefundView:
    """A failed refund an operator may retry, locked, read once: RefundNotFound,
    RefundOwnedByReturn for a return's (its return asks again itself), RefundNotFailed for one
    not waiting (a retried one passes: a repeated retry answers the first), RefundExceedsCaptured
    when less is left of the capture than it (`refuse_if_nothing_left`)."""
    view = await _view(session, refund_id, lock=True)
    if view is not None:
        _refuse_if_a_returns(view)
    view = _still_failed(view, refund_id, RefundResolution.RETRIED)
    await refuse_if_nothing_left(session, view)
    return view


def _still_failed(
    view: RefundView | None, refund_id: uuid.UUID, settled_as: RefundResolution | None
) -> RefundView:
    if view is None:
        raise RefundNotFound("no such refund", refund_id=str(refund_id))
    row = view.refund
    waiting = row.resolution is None or (
        settled_as is not None and row.resolution == settled_as.value
    )
    if row.status != RefundStatus.FAILED.value or not waiting:
        raise RefundNotFailed(
            "only a failed refund that nobody has settled waits for an operator",
            refund_id=str(refund_id),
            status=row.status,
            resolution=row.resolution,
        )
    return view


async def refuse_if_nothing_left(session: AsyncSession, view: RefundView) -> None:
    """RefundExceedsCaptured when retrying the failed refund of `view` would give back more than
    is left of its payment's capture (captured, less what was refunded, what pending refunds
    and requested refunds hold): e.g. its money was given back meanwhile in the provider's
    dashboard. A refund already retried passes (the repeated request answers the first retry).
    Without a lock on the payment this is the early answer; the provider refuses a refund that
    a concurrent one left no room for (the retry activity reports that refusal the same way)."""
    if view.refund.resolution is not None:
        return
    left = await refundable(session, view.payment)
    amount = Money.of(view.refund.amount, view.refund.currency)
    if amount > left:
        raise RefundExceedsCaptured(
            "the failed refund is more than is left of the captured amount",
            refund_id=str(view.refund.id),
            requested=str(amount.amount),
            refundable=str(left.amount),
            currency=left.currency,
        )


async def refund(session: AsyncSession, refund_id: uuid.UUID) -> RefundView:
    """One refund with its payment and request (RefundNotFound)."""
    view = await _view(session, refund_id)
    if view is None:
        raise RefundNotFound("no such refund", refund_id=str(refund_id))
    return view


async def refuse_if_a_returns(session: AsyncSession, refund_id: uuid.UUID) -> None:
    """RefundOwnedByReturn when the refund was asked for by a return (as its request records):
    its return settles it."""
    view = await _view(session, refund_id)
    if view is not None:
        _refuse_if_a_returns(view)


def _refuse_if_a_returns(view: RefundView) -> None:
    if view.return_id is not None:
        raise RefundOwnedByReturn(
            "this refund is a return's: retry it on its return",
            refund_id=str(view.refund.id),
            return_id=str(view.return_id),
        )


async def settle_refund(
    session: AsyncSession,
    refund_id: uuid.UUID,
    resolution: RefundResolution,
    note: str | None,
) -> RefundView:
    """Mark a failed refund settled by an operator (retried, or resolved with a note)."""
    view = await failed_refund(session, refund_id, settled_as=resolution)
    view.refund.resolution = resolution.value
    view.refund.resolution_note = note
    await session.flush()
    await session.refresh(view.refund)  # its updated_at, set by the database
    return view
