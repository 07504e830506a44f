"""Delivery of pending notifications, with retries (the attempts are recorded on each row)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from domains.notifications import service
from domains.notifications.models import Notification
from kit.db import DomainDatabase
from kit.logging import get_logger

log = get_logger(__name__)

SENDER_MAX_ATTEMPTS = 8


class DevSender:
    """Development delivery: a log line and a JSON file per message in DATA_DIR/outbox-mail.

    A sender can die between handing a message over and recording it sent, and then sends it
    again after its restart; only the receiving end can make that one delivery. So every
    delivery carries the notification's id as its idempotency key, and a provider must keep one
    message per key (email and SMS providers take such a key, or a message id to deduplicate
    on). This one does it with the file system: the message is written aside and linked into
    the mailbox under its id, which fails if that id is already there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notification: Notification) -> None:
        """Deliver the message once per notification id; raises on failure (the caller retries)."""
        document = {
            "id": str(notification.id),
            "user_id": str(notification.user_id),
            "type": notification.type,
            "payload": notification.payload,
        }
        delivered = await asyncio.to_thread(
            self._deliver, str(notification.id), json.dumps(document, indent=2)
        )
        event = "notifications.sent" if delivered else "notifications.send_replayed"
        log.info(event, notification_id=str(notification.id), type=notification.type)

    def _deliver(self, key: str, text: str) -> bool:
        """Put the message in the mailbox under `key`, whole or not at all: False if a message
        with that key is already there (this is a replay, and nothing is delivered again)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{key}.json"
        if final.exists():
            return False
        with tempfile.NamedTemporaryFile(
            "w", dir=self.directory, prefix=f".{key}.", suffix=".part", delete=False
        ) as part:
            part.write(text)
        try:
            os.link(part.name, final)
        except FileExistsError:
            return False
        finally:
            os.unlink(part.name)
        return True


async def send_due(db: DomainDatabase, sender: DevSender) -> int:
    """One sender pass: deliver what is due, recording each attempt."""
    async with db.begin() as session:
        rows = await service.due(session)
        for row in rows:
            try:
                await sender.send(row)
                error = None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            service.record_attempt(row, error, max_attempts=SENDER_MAX_ATTEMPTS)
        return len(rows)
