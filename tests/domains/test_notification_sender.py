"""A notification reaches the buyer once, even when its sender dies after handing it over and
before recording it sent: the second delivery carries the same idempotency key and is refused."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from structlog.testing import capture_logs

from domains.notifications import service
from domains.notifications.models import Notification
from domains.notifications.sender import DevSender, send_due
from domains.notifications.statuses import NotificationStatus
from kit.db import DomainDatabase


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["notifications"]


@pytest.fixture
async def pending(db: DomainDatabase) -> AsyncIterator[uuid.UUID]:
    """A pending notification for a buyer of its own (removed afterwards)."""
    async with db.begin() as session:
        row = await service.notify(session, uuid.uuid4(), "order_confirmed", {"order": "ORD-1"})
        notification_id = row.id
    yield notification_id
    async with db.begin() as session:
        await session.execute(delete(Notification).where(Notification.id == notification_id))


class DiesAfterHandingOver(DevSender):
    """A sender killed after the provider took `victim` and before the row was committed (what
    else is pending in the shared database is sent as usual)."""

    def __init__(self, directory: Path, victim: uuid.UUID) -> None:
        super().__init__(directory)
        self.victim = victim

    async def send(self, notification: Notification) -> None:
        await super().send(notification)
        if notification.id == self.victim:
            raise asyncio.CancelledError


async def _until_killed(db: DomainDatabase, sender: DiesAfterHandingOver) -> None:
    """Sender passes until the one that reaches the victim (others' rows may come first)."""
    for _ in range(100):
        await send_due(db, sender)


def _events(logs: list[MutableMapping[str, Any]], notification_id: uuid.UUID) -> list[Any]:
    key = str(notification_id)
    return [entry["event"] for entry in logs if entry.get("notification_id") == key]


async def test_a_sender_dying_before_its_commit_delivers_once_after_its_restart(
    db: DomainDatabase, pending: uuid.UUID, tmp_path: Path
) -> None:
    mailbox = tmp_path / "outbox-mail"
    with capture_logs() as logs:
        with pytest.raises(asyncio.CancelledError):
            await _until_killed(db, DiesAfterHandingOver(mailbox, pending))
        async with db.begin() as session:
            row = await session.get(Notification, pending)
            assert row is not None
            assert row.status == NotificationStatus.PENDING.value
        while await send_due(db, DevSender(mailbox)):
            pass

    assert _events(logs, pending) == ["notifications.sent", "notifications.send_replayed"]
    assert [path.name for path in mailbox.glob(f"{pending}*")] == [f"{pending}.json"]
    assert json.loads((mailbox / f"{pending}.json").read_text())["type"] == "order_confirmed"
    assert not list(mailbox.glob(".*.part")), "the half-written copies are removed"
    async with db.begin() as session:
        status = await session.scalar(select(Notification.status).where(Notification.id == pending))
    assert status == NotificationStatus.SENT.value


async def test_two_senders_racing_on_one_message_deliver_it_once(
    db: DomainDatabase, pending: uuid.UUID, tmp_path: Path
) -> None:
    mailbox = tmp_path / "outbox-mail"
    async with db.begin() as session:
        row = await session.get(Notification, pending)
        assert row is not None
        with capture_logs() as logs:
            await asyncio.gather(*(DevSender(mailbox).send(row) for _ in range(8)))
    assert _events(logs, pending).count("notifications.sent") == 1
    assert len(list(mailbox.iterdir())) == 1
