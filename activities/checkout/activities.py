"""The checkout's own record, written by local activities on the checkout worker."""

from __future__ import annotations

from temporalio import activity

from activities.checkout.contract import (
    OPEN_SESSION,
    RECORD_PROGRESS,
    CheckoutStatusBody,
    OpenedSession,
    OpenSessionInput,
    ProgressInput,
)
from domains.checkout import service
from domains.checkout.statuses import StepStatus
from kit.db import DomainDatabase


class CheckoutActivities:
    """Local activities of the `checkout` worker, holding only the checkout database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=OPEN_SESSION.name)
    async def open_session(self, input: OpenSessionInput) -> OpenedSession:
        """Record the session (a retry or the API's earlier insert finds it).

        A session that has ended answers its recorded outcome: a checkout is never run twice,
        even by a run started after the first one's history was deleted.
        """
        async with self.db.begin() as session:
            row = await service.open_session(
                session,
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                cart_id=input.cart_id,
                idempotency_key=input.idempotency_key,
                request_hash=input.request_hash,
            )
            if row.completed_at is None:
                return OpenedSession()
            return OpenedSession(ended=CheckoutStatusBody.of_record(row))

    @activity.defn(name=RECORD_PROGRESS.name)
    async def record_progress(self, input: ProgressInput) -> None:
        """Upsert the step's row and the session's status body."""
        async with self.db.begin() as session:
            await service.record_progress(
                session,
                checkout_id=input.checkout_id,
                steps={name: StepStatus(status) for name, status in input.steps.items()},
                error_code=input.error_code,
                details=input.details(),
            )
