"""Recording the provider's webhook events: one row per event, in the transaction of its change."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from sandbox.psp import objects
from sandbox.psp.models import new_id
from sandbox.psp.webhooks import PAYMENTS_TARGET


def record(conn: sqlite3.Connection, event_type: str, obj: dict[str, Any], intent_id: str) -> str:
    """Record a webhook event carrying `obj` as it is now; the delivery loop sends it.

    `intent_id` files it under its payment intent (`GET /v1/events?payment_intent=`), whatever
    object it carries (the intent, its charge, a refund or a dispute).
    """
    now = time.time()
    event_id = new_id("evt")
    body = objects.event(id=event_id, type=event_type, created=int(now), obj=obj)
    conn.execute(
        "INSERT INTO events (id, type, target, payment_intent, created, body, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, event_type, PAYMENTS_TARGET, intent_id, int(now), json.dumps(body), now),
    )
    return event_id
