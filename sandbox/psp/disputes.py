"""Disputes: a capture on `pm_card_createDispute` is disputed by the buyer's bank a few seconds
later, as Stripe's test card is (`charge.dispute.created`, the dispute `needs_response`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sandbox.psp import events, objects
from sandbox.psp.models import new_id

DISPUTE_CREATED = "charge.dispute.created"
# What Stripe's test card disputes as, and how long the merchant has to answer.
REASON = "fraudulent"
RESPONSE_WINDOW_S = 7 * 24 * 3600


def schedule(
    conn: sqlite3.Connection, intent: dict[str, Any], charge_id: str, *, at: float
) -> None:
    """Open a dispute over the captured amount at time `at` (a durable timer fires it)."""
    conn.execute(
        "INSERT INTO disputes (id, payment_intent, charge, amount, currency, reason, status,"
        " due_at, created) VALUES (?, ?, ?, ?, ?, ?, 'needs_response', ?, ?)",
        (
            new_id("dp"),
            intent["id"],
            charge_id,
            intent["amount_received"],
            intent["currency"],
            REASON,
            at,
            int(at),
        ),
    )


def to_json(row: sqlite3.Row) -> dict[str, Any]:
    """Stripe's dispute object of a `disputes` row."""
    return objects.dispute(
        id=row["id"],
        amount=row["amount"],
        currency=row["currency"],
        charge=row["charge"],
        payment_intent=row["payment_intent"],
        status=row["status"],
        reason=row["reason"],
        created=row["created"],
        due_by=row["created"] + RESPONSE_WINDOW_S,
    )


def disputed(conn: sqlite3.Connection, intent_id: str) -> bool:
    """Whether the intent's charge has an open dispute (one already announced)."""
    row = conn.execute(
        "SELECT 1 FROM disputes WHERE payment_intent = ? AND due_at IS NULL", (intent_id,)
    ).fetchone()
    return row is not None


def open_due(conn: sqlite3.Connection, now: float) -> int:
    """Open every dispute whose time has come: `charge.dispute.created` for each."""
    rows = conn.execute(
        "SELECT id FROM disputes WHERE due_at IS NOT NULL AND due_at <= ?", (now,)
    ).fetchall()
    for row in rows:
        conn.execute("UPDATE disputes SET due_at = NULL WHERE id = ?", (row["id"],))
        opened = conn.execute("SELECT * FROM disputes WHERE id = ?", (row["id"],)).fetchone()
        events.record(conn, DISPUTE_CREATED, to_json(opened), opened["payment_intent"])
    return len(rows)


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the next dispute opens, None when none is pending."""
    row = conn.execute("SELECT MIN(due_at) AS due FROM disputes").fetchone()
    return float(row["due"]) if row["due"] is not None else None
