"""Delivery of pending notifications, with retries (the attempts are recorded on each row)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from domains.notifications import service
from domains.notifications.models import Notification
from kit.db import DomainDatabase
from kit.logging import get_logger

log = get_logger(__name__)

SENDER_MAX_ATTEMPTS = 8


class DevSender:
    """Development delivery: a log line and a JSON file per message in DATA_DIR/outbox-mail."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notification: Notification) -> None:
        """Write the message; raises on failure (the caller retries)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        document = {
            "id": str(notification.id),
            "user_id": str(notification.user_id),
            "type": notification.type,
            "payload": notification.payload,
        }
        path = self.directory / f"{notification.id}.json"
        await asyncio.to_thread(path.write_text, json.dumps(document, indent=2))
        log.info("notifications.sent", notification_id=str(notification.id), type=notification.type)


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
