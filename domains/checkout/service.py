"""The durable record of each checkout: its session and one row per step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.checkout.errors import CheckoutNotFound, IdempotencyKeyMismatch
from domains.checkout.models import CheckoutSession, CheckoutStep
from domains.checkout.statuses import FINAL, CheckoutStatus, StepStatus
from kit.db import get_owned, insert_or_get
from kit.outbox import append_event


class CheckoutEnded(BaseModel):
    """`checkout.completed`, `.failed`, `.cancelled`, `.expired`."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    order_id: uuid.UUID | None
    order_number: str | None
    failure_code: str | None


async def open_session(
    session: AsyncSession,
    *,
    checkout_id: uuid.UUID,
    user_id: uuid.UUID,
    cart_id: uuid.UUID,
    idempotency_key: str,
    request_hash: str,
) -> CheckoutSession:
    """The checkout's session, created once (unique id, and unique key per user)."""
    # The API's `begin` usually inserted it already. The (user, key) pair of another checkout
    # fails on its unique constraint: a bug upstream, never a row to share.
    row, _ = await insert_or_get(
        session,
        CheckoutSession,
        {
            "id": checkout_id,
            "user_id": user_id,
            "cart_id": cart_id,
            "status": CheckoutStatus.PROCESSING.value,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
        },
        key=[CheckoutSession.id],
    )
    return row


async def record_progress(
    session: AsyncSession,
    *,
    checkout_id: uuid.UUID,
    steps: dict[str, StepStatus],
    error_code: str | None,
    details: dict[str, Any],
) -> None:
    """Upsert the rows of the steps that moved and mirror the status body on the session.

    Two statements, no ORM round trips: this runs at every step of every checkout. The
    `checkout.<status>` event is written once, by the update that first sets `completed_at`.
    """
    now = datetime.now(UTC)
    if steps:
        rows = [
            {
                "id": uuid.uuid4(),
                "session_id": checkout_id,
                "step_name": step,
                "status": status.value,
                "error_code": error_code if status == StepStatus.FAILED else None,
            }
            for step, status in steps.items()
        ]
        statement = insert(CheckoutStep).values(rows)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[CheckoutStep.session_id, CheckoutStep.step_name],
                set_={
                    "status": statement.excluded.status,
                    "error_code": func.coalesce(
                        statement.excluded.error_code, CheckoutStep.error_code
                    ),
                    "updated_at": now,
                },
            )
        )
    # A session that has ended never changes again (nor goes back to `processing`): a retried
    # record, or a run started by mistake for an ended checkout, finds nothing to update.
    update_session = update(CheckoutSession).where(
        CheckoutSession.id == checkout_id, CheckoutSession.completed_at.is_(None)
    )
    if CheckoutStatus(details["status"]) not in FINAL:
        await session.execute(update_session.values(**details, updated_at=now))
        return
    ended = (
        await session.execute(
            update_session.values(**details, updated_at=now, completed_at=now).returning(
                CheckoutSession.user_id
            )
        )
    ).one_or_none()
    if ended is None:
        return
    await append_event(
        session,
        "checkout",
        checkout_id,
        f"checkout.{details['status']}",
        CheckoutEnded(
            checkout_id=checkout_id,
            user_id=ended.user_id,
            status=details["status"],
            order_id=details["order_id"],
            order_number=details["order_number"],
            failure_code=details["failure_code"],
        ),
    )


async def begin(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    cart_id: uuid.UUID,
    idempotency_key: str,
    request_hash: str,
) -> tuple[CheckoutSession, bool]:
    """The session for (user, key): created now (True) or found (False).

    The unique (user_id, idempotency_key) makes this safe under any number of concurrent
    requests: exactly one insert wins, every other one finds its row. The same key with another
    request body is refused.
    """
    row, created = await insert_or_get(
        session,
        CheckoutSession,
        {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "cart_id": cart_id,
            "status": CheckoutStatus.PROCESSING.value,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
        },
        key=[CheckoutSession.user_id, CheckoutSession.idempotency_key],
    )
    if not created and row.request_hash != request_hash:
        raise IdempotencyKeyMismatch("this Idempotency-Key was used with another request body")
    return row, created


async def get_session(
    session: AsyncSession, checkout_id: uuid.UUID, user_id: uuid.UUID | None
) -> CheckoutSession:
    """A checkout's session; `user_id` restricts it to its buyer (None: operator)."""
    row = await get_owned(session, CheckoutSession, checkout_id, user_id)
    if row is None:
        raise CheckoutNotFound("no such checkout", checkout_id=str(checkout_id))
    return row


async def find_by_key(
    session: AsyncSession, user_id: uuid.UUID, idempotency_key: str
) -> CheckoutSession | None:
    """The session a user started under an Idempotency-Key, if any."""
    return await session.scalar(
        select(CheckoutSession).where(
            CheckoutSession.user_id == user_id, CheckoutSession.idempotency_key == idempotency_key
        )
    )


async def last_moved(
    session: AsyncSession, checkout_ids: list[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When each checkout last recorded progress (its current step's age)."""
    rows = await session.execute(
        select(CheckoutSession.id, CheckoutSession.updated_at).where(
            CheckoutSession.id.in_(checkout_ids)
        )
    )
    return {checkout_id: updated for checkout_id, updated in rows}


async def steps_of(session: AsyncSession, checkout_id: uuid.UUID) -> list[CheckoutStep]:
    """A checkout's recorded steps, in the order they started."""
    rows = await session.scalars(
        select(CheckoutStep)
        .where(CheckoutStep.session_id == checkout_id)
        .order_by(CheckoutStep.started_at, CheckoutStep.step_name)
    )
    return list(rows)
