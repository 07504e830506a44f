"""The durable record of each checkout: its session and one row per step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.checkout.models import CheckoutSession, CheckoutStatus, CheckoutStep, StepStatus
from kit.outbox import append_event

FINAL = frozenset(
    {
        CheckoutStatus.COMPLETED,
        CheckoutStatus.FAILED,
        CheckoutStatus.CANCELLED,
        CheckoutStatus.EXPIRED,
    }
)


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
    await session.execute(
        insert(CheckoutSession)
        .values(
            id=checkout_id,
            user_id=user_id,
            cart_id=cart_id,
            status=CheckoutStatus.PROCESSING.value,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        .on_conflict_do_nothing()
    )
    row = await session.get(CheckoutSession, checkout_id)
    assert row is not None, "the idempotency key of this checkout belongs to another one"
    return row


async def record_progress(
    session: AsyncSession,
    *,
    checkout_id: uuid.UUID,
    steps: dict[str, StepStatus],
    error_code: str | None,
    details: dict[str, Any],
) -> None:
    """Upsert the rows of the steps that moved and mirror the status body on the session."""
    now = datetime.now(UTC)
    for step, step_status in steps.items():
        failed = step_status == StepStatus.FAILED
        await session.execute(
            insert(CheckoutStep)
            .values(
                id=uuid.uuid4(),
                session_id=checkout_id,
                step_name=step,
                status=step_status.value,
                error_code=error_code if failed else None,
            )
            .on_conflict_do_update(
                index_elements=[CheckoutStep.session_id, CheckoutStep.step_name],
                set_={
                    "status": step_status.value,
                    "error_code": error_code if failed else CheckoutStep.error_code,
                    "updated_at": now,
                },
            )
        )
    row = await session.scalar(
        select(CheckoutSession).where(CheckoutSession.id == checkout_id).with_for_update()
    )
    if row is None:
        return
    was_final = CheckoutStatus(row.status) in FINAL
    for name, value in details.items():
        setattr(row, name, value)
    if CheckoutStatus(row.status) in FINAL and not was_final:
        row.completed_at = now
        await append_event(
            session,
            "checkout",
            checkout_id,
            f"checkout.{row.status}",
            CheckoutEnded(
                checkout_id=checkout_id,
                user_id=row.user_id,
                status=row.status,
                order_id=row.order_id,
                order_number=row.order_number,
                failure_code=row.failure_code,
            ),
        )
