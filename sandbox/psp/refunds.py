"""Refunds: rows, Stripe's refund objects, and the failure of a refund that cannot reach the card.

A card refund normally succeeds at once. One made on `pm_card_refundFail` is accepted `pending`
and fails a moment later, as Stripe's does: the money comes back to the charge (its
`amount_refunded` goes down again) and `refund.failed` and `charge.refund.updated` are sent.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sandbox.psp import events, objects

REFUND_FAILED = "refund.failed"
CHARGE_REFUND_UPDATED = "charge.refund.updated"
# Why a refund to pm_card_refundFail fails (one of Stripe's refund failure reasons).
FAILURE_REASON = "expired_or_canceled_card"


def charge_id_of(intent_id: str) -> str:
    """The id of an intent's charge (the sandbox derives it from the intent's)."""
    return f"ch_{intent_id.removeprefix('pi_')}"


def to_json(row: sqlite3.Row) -> dict[str, Any]:
    """Stripe's refund object of a `refunds` row."""
    return objects.refund(
        id=row["id"],
        amount=row["amount"],
        currency=row["currency"],
        charge=charge_id_of(row["payment_intent"]),
        payment_intent=row["payment_intent"],
        status=row["status"],
        reason=row["reason"],
        failure_reason=row["failure_reason"],
        metadata=json.loads(row["metadata"]),
        created=row["created"],
    )


def of_intent(conn: sqlite3.Connection, intent_id: str) -> list[dict[str, Any]]:
    """The intent's refunds, newest first (as a charge lists them)."""
    rows = conn.execute(
        "SELECT * FROM refunds WHERE payment_intent = ? ORDER BY created DESC, rowid DESC",
        (intent_id,),
    ).fetchall()
    return [to_json(row) for row in rows]


def get(conn: sqlite3.Connection, refund_id: str) -> dict[str, Any]:
    """One refund (it exists: the caller just wrote it)."""
    row = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
    return to_json(row)


def fail_due(conn: sqlite3.Connection, now: float) -> int:
    """Fail every pending refund whose time has come, giving the money back to the charge."""
    rows = conn.execute(
        "SELECT * FROM refunds WHERE due_at IS NOT NULL AND due_at <= ?", (now,)
    ).fetchall()
    for row in rows:
        conn.execute(
            "UPDATE refunds SET status = 'failed', failure_reason = ?, due_at = NULL WHERE id = ?",
            (FAILURE_REASON, row["id"]),
        )
        conn.execute(
            "UPDATE payment_intents SET amount_refunded = amount_refunded - ? WHERE id = ?",
            (row["amount"], row["payment_intent"]),
        )
        refund = get(conn, row["id"])
        events.record(conn, REFUND_FAILED, refund, row["payment_intent"])
        events.record(conn, CHARGE_REFUND_UPDATED, refund, row["payment_intent"])
    return len(rows)


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the next pending refund fails, None when none is pending."""
    row = conn.execute("SELECT MIN(due_at) AS due FROM refunds").fetchone()
    return float(row["due"]) if row["due"] is not None else None
