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
from domains.checkout.models import CheckoutSession
from domains.checkout.statuses import FINAL, CheckoutStatus, StepStatus
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
        async with service.autocommit(self.db) as session:
            found = await service.find_session(session, input.checkout_id)
        if found is not None:  # the API's `begin` inserted it (one read, no transaction)
            return self._opened(found)
        async with self.db.begin() as session:
            row = await service.open_session(
                session,
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                cart_id=input.cart_id,
                idempotency_key=input.idempotency_key,
                request_hash=input.request_hash,
            )
            return self._opened(row)

    @staticmethod
    def _opened(row: CheckoutSession) -> OpenedSession:
        if row.completed_at is None:
            return OpenedSession()
        return OpenedSession(ended=CheckoutStatusBody.of_record(row))

    @activity.defn(name=RECORD_PROGRESS.name)
    async def record_progress(self, input: ProgressInput) -> None:
        """Upsert the step's row and the session's status body.

        One statement while the checkout runs; the end also writes its event, atomically."""
        ended = CheckoutStatus(input.body.status) in FINAL
        async with self.db.begin() if ended else service.autocommit(self.db) as session:
            await service.record_progress(
                session,
                checkout_id=input.checkout_id,
                steps={name: StepStatus(status) for name, status in input.steps.items()},
                error_code=input.error_code,
                details=input.details(),
                started_at=input.started_at,
            )
