"""Events as the relay would deliver them, for applying domain reactions without NATS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kit.consumer import Envelope, EventConsumer, Reactions
from kit.db import DomainDatabase
from kit.subjects import EventName


def envelope(name: EventName, payload: dict[str, Any]) -> Envelope:
    """A fresh event (new id) of kind `name` carrying `payload`."""

    return Envelope(
        id=uuid.uuid4(),
        domain=name.domain,
        aggregate_type=name.aggregate_type,
        aggregate_id=uuid.uuid4(),
        event_type=name.event_type,
        seq=1,
        occurred_at=datetime.now(UTC),
        payload=payload,
    )


def consumer(name: str, db: DomainDatabase, reactions: Reactions) -> EventConsumer:
    """A consumer that is only ever asked to `apply` (no NATS)."""
    return EventConsumer(name, db, None, reactions)  # type: ignore[arg-type]
