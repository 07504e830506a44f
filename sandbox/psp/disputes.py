"""Disputes: a capture on `pm_card_createDispute` is disputed by the buyer's bank a few seconds
later, as Stripe's test card is (`charge.dispute.created`, the dispute `needs_response`).

The merchant answers as at Stripe: evidence (`POST /v1/disputes/{id}`), where Stripe's test-mode
texts `winning_evidence` and `losing_evidence` decide it at once, or accepting it
(`POST /v1/disputes/{id}/close`, lost). A decided dispute sends `charge.dispute.closed`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sandbox.psp import events, objects
from sandbox.psp.errors import ApiError, resource_missing
from sandbox.psp.models import DisputeUpdateRequest, Outcome, new_id

DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_UPDATED = "charge.dispute.updated"
DISPUTE_CLOSED = "charge.dispute.closed"
OPEN = frozenset({"needs_response", "under_review"})
# Stripe's test-mode evidence that decides a submitted dispute.
DECIDING_TEXT = {"winning_evidence": "won", "losing_evidence": "lost"}
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
        evidence=json.loads(row["evidence"]),
        submission_count=row["submission_count"],
        metadata=json.loads(row["metadata"]),
    )


def require(conn: sqlite3.Connection, dispute_id: str) -> sqlite3.Row:
    """An opened dispute's row, or resource_missing (one not yet opened does not exist yet)."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM disputes WHERE id = ? AND due_at IS NULL", (dispute_id,)
    ).fetchone()
    if row is None:
        raise resource_missing("dispute", dispute_id)
    return row


def _open_one(conn: sqlite3.Connection, dispute_id: str) -> sqlite3.Row:
    row = require(conn, dispute_id)
    if row["status"] not in OPEN:
        raise ApiError(
            400,
            "invalid_request_error",
            None,
            f"This dispute is already closed (status {row['status']}).",
        )
    return row


def update(conn: sqlite3.Connection, dispute_id: str, req: DisputeUpdateRequest) -> Outcome:
    """Stage or submit evidence; submitted Stripe test texts decide the dispute."""
    row = _open_one(conn, dispute_id)
    evidence = {**json.loads(row["evidence"]), **req.evidence}
    status, submissions = row["status"], row["submission_count"]
    if req.submit:
        submissions += 1
        status = DECIDING_TEXT.get(evidence.get("uncategorized_text", ""), "under_review")
    conn.execute(
        "UPDATE disputes SET evidence = ?, metadata = ?, status = ?, submission_count = ?"
        " WHERE id = ?",
        (
            json.dumps(evidence),
            json.dumps({**json.loads(row["metadata"]), **req.metadata}),
            status,
            submissions,
            dispute_id,
        ),
    )
    return _changed(conn, dispute_id)


def close(conn: sqlite3.Connection, dispute_id: str) -> Outcome:
    """The merchant accepts the dispute: lost, the money stays with the buyer."""
    _open_one(conn, dispute_id)
    conn.execute("UPDATE disputes SET status = 'lost' WHERE id = ?", (dispute_id,))
    return _changed(conn, dispute_id)


def _changed(conn: sqlite3.Connection, dispute_id: str) -> Outcome:
    row = require(conn, dispute_id)
    body = to_json(row)
    kind = DISPUTE_UPDATED if row["status"] in OPEN else DISPUTE_CLOSED
    events.record(conn, kind, body, row["payment_intent"])
    return Outcome(200, body)


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
