"""The durable record of each checkout: its session and one row per step."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import CTE, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.checkout.errors import CheckoutNotFound, IdempotencyKeyMismatch
from domains.checkout.models import OPEN, CheckoutSession, CheckoutStep
from domains.checkout.statuses import FINAL, CheckoutStatus, StepStatus
from kit.db import DomainDatabase, get_owned, insert_or_get
from kit.outbox import append_event


@asynccontextmanager
async def autocommit(db: DomainDatabase) -> AsyncIterator[AsyncSession]:
    """A session whose statements each commit on their own, for work of one statement (a status
    read, a progress record): no BEGIN and COMMIT around it (the pool's liveness check still
    opens and rolls back one of its own). Anything that must be atomic uses `db.begin()`."""
    async with db.engine.connect() as connection:
        alone = await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=alone, expire_on_commit=False) as session:
            yield session


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


async def find_session(session: AsyncSession, checkout_id: uuid.UUID) -> CheckoutSession | None:
    """A checkout's session, if it has one."""
    return await session.get(CheckoutSession, checkout_id)


async def record_progress(
    session: AsyncSession,
    *,
    checkout_id: uuid.UUID,
    steps: dict[str, StepStatus],
    error_code: str | None,
    details: dict[str, Any],
    started_at: dict[str, datetime] | None = None,
) -> None:
    """Upsert the rows of the steps that moved and mirror the status body on the session.

    One statement (the steps' upsert rides along as a data-modifying WITH), no ORM round trips:
    this runs whenever a checkout shows its progress. `started_at` says when steps began (rows
    written only once the step has ended); a row keeps the start it was first written with. The
    `checkout.<status>` event is written once, by the update that first sets `completed_at`.
    """
    now = datetime.now(UTC)
    final = CheckoutStatus(details["status"]) in FINAL
    # A session that has ended never changes again (nor goes back to `processing`): a retried
    # record, or a run started by mistake for an ended checkout, finds nothing to update.
    statement = (
        update(CheckoutSession)
        .where(CheckoutSession.id == checkout_id, CheckoutSession.completed_at.is_(None))
        .values(**details, updated_at=now, **({"completed_at": now} if final else {}))
    )
    if steps:
        statement = statement.add_cte(
            _upsert_steps(checkout_id, steps, error_code, started_at, now)
        )
    if not final:
        await session.execute(statement)
        return
    ended = (await session.execute(statement.returning(CheckoutSession.user_id))).one_or_none()
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


def _upsert_steps(
    checkout_id: uuid.UUID,
    steps: dict[str, StepStatus],
    error_code: str | None,
    started_at: dict[str, datetime] | None,
    now: datetime,
) -> CTE:
    """The rows of the steps that moved, inserted or updated (status, error code)."""
    rows = [
        {
            "id": uuid.uuid4(),
            "session_id": checkout_id,
            "step_name": step,
            "status": status.value,
            "error_code": error_code if status == StepStatus.FAILED else None,
            "started_at": (started_at or {}).get(step, now),
        }
        for step, status in steps.items()
    ]
    statement = insert(CheckoutStep).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[CheckoutStep.session_id, CheckoutStep.step_name],
        set_={
            "status": statement.excluded.status,
            "error_code": func.coalesce(statement.excluded.error_code, CheckoutStep.error_code),
            "updated_at": now,
        },
    ).cte("moved_steps")


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


async def positions(
    session: AsyncSession, checkout_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, datetime]]:
    """Each checkout's recorded step and when it last recorded progress (the step's age)."""
    rows = await session.execute(
        select(CheckoutSession.id, CheckoutSession.step, CheckoutSession.updated_at).where(
            CheckoutSession.id.in_(checkout_ids)
        )
    )
    return {checkout_id: (step, updated) for checkout_id, step, updated in rows}


async def steps_of(session: AsyncSession, checkout_id: uuid.UUID) -> list[CheckoutStep]:
    """A checkout's recorded steps, in the order they started."""
    rows = await session.scalars(
        select(CheckoutStep)
        .where(CheckoutStep.session_id == checkout_id)
        .order_by(CheckoutStep.started_at, CheckoutStep.step_name)
    )
    return list(rows)


async def open_by_step(session: AsyncSession) -> dict[str, tuple[int, datetime]]:
    """Per step, the checkouts not ended that stand at it: how many, and when the one that moved
    least recently last recorded progress (what the checkout worker's gauges export)."""
    rows = await session.execute(
        select(CheckoutSession.step, func.count(), func.min(CheckoutSession.updated_at))
        .where(CheckoutSession.status.in_(OPEN))  # as ix_checkout_sessions_open has it
        .group_by(CheckoutSession.step)
    )
    return {step: (count, oldest) for step, count, oldest in rows}
