"""Carrier bookings (labels, tracking numbers) and their tracking; run in a Store transaction.

A booked parcel moves on its own, one status per step, its next due time stored in the row so that
a restart resumes it. Each move writes its tracking event in the same transaction, so a status
without its webhook (or a webhook without its status) cannot exist.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.psp.errors import invalid_request, resource_missing
from sandbox.psp.models import Outcome, ShipmentRequest, new_id
from sandbox.psp.webhooks import CARRIER_TARGET, delivery_state

CARRIER = "sandbox"
TRACKING = "shipment.tracking"
# The route of a parcel; delivered and cancelled are final.
NEXT_STATUS = {
    "label_created": "in_transit",
    "in_transit": "out_for_delivery",
    "out_for_delivery": "delivered",
}
# A postal code the sandbox carrier cannot serve: books nothing and answers 400, the way to test
# a checkout whose last step fails for good after the payment was captured.
UNDELIVERABLE_POSTAL_CODE = "00000"


def label_url(psp_url: str, shipment_id: str) -> str:
    """Where the shipment's label (a one-page PDF) is served."""
    return f"{psp_url.rstrip('/')}/v1/carrier/labels/{shipment_id}.pdf"


def _to_json(row: sqlite3.Row, psp_url: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "shipment",
        "carrier": CARRIER,
        "tracking_number": row["tracking_number"],
        "label_url": label_url(psp_url, row["id"]),
        "status": row["status"],
        "reference": row["reference"],
        "ship_to": json.loads(row["ship_to"]),
        "created": row["created"],
    }


def _require(conn: sqlite3.Connection, shipment_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM shipments WHERE id = ?", (shipment_id,)
    ).fetchone()
    if row is None:
        raise resource_missing("shipment", shipment_id)
    return row


def _tracking_number(conn: sqlite3.Connection) -> str:
    # Random rather than sequential so numbers never repeat across wiped databases either.
    while True:
        candidate = f"SBX{secrets.randbelow(10**12):012d}"
        taken = conn.execute(
            "SELECT 1 FROM shipments WHERE tracking_number = ?", (candidate,)
        ).fetchone()
        if taken is None:
            return candidate


def create_shipment(
    conn: sqlite3.Connection, req: ShipmentRequest, *, psp_url: str, step_s: float
) -> Outcome:
    """Book a shipment: a label and a tracking number at once, in transit one step later."""
    if str(req.ship_to.get("postal_code", "")).strip() == UNDELIVERABLE_POSTAL_CODE:
        raise invalid_request(
            "address_undeliverable",
            "The carrier does not deliver to this address.",
            param="ship_to",
        )
    now = time.time()
    shipment_id = new_id("shp")
    conn.execute(
        "INSERT INTO shipments (id, reference, ship_to, tracking_number, status, due_at, created)"
        " VALUES (?, ?, ?, ?, 'label_created', ?, ?)",
        (
            shipment_id,
            req.reference,
            json.dumps(req.ship_to),
            _tracking_number(conn),
            now + step_s,
            int(now),
        ),
    )
    return Outcome(201, _to_json(_require(conn, shipment_id), psp_url))


def cancel_shipment(conn: sqlite3.Connection, shipment_id: str, *, psp_url: str) -> Outcome:
    """Void the label; cancelling a cancelled shipment succeeds and changes nothing."""
    row = _require(conn, shipment_id)
    if row["status"] not in ("label_created", "cancelled"):
        # The carrier has the parcel: voiding the label no longer stops it.
        raise invalid_request(
            "shipment_unexpected_state",
            f"You cannot cancel a shipment with status {row['status']}.",
        )
    # due_at cleared: a cancelled shipment must never move again.
    conn.execute(
        "UPDATE shipments SET status = 'cancelled', due_at = NULL WHERE id = ?", (shipment_id,)
    )
    return Outcome(200, _to_json(_require(conn, shipment_id), psp_url))


def get_shipment(conn: sqlite3.Connection, shipment_id: str, *, psp_url: str) -> dict[str, Any]:
    """The shipment, or resource_missing."""
    return _to_json(_require(conn, shipment_id), psp_url)


def _emit(conn: sqlite3.Connection, shipment: dict[str, Any], occurred_at: float) -> str:
    """Record a tracking event carrying the shipment as it is now; the carrier loop sends it."""
    now = time.time()
    event_id = new_id("cev")
    body = {
        "id": event_id,
        "object": "event",
        "type": TRACKING,
        "created": int(now),
        "data": {
            "status": shipment["status"],
            "occurred_at": datetime.fromtimestamp(occurred_at, UTC).isoformat(),
            "object": shipment,
        },
    }
    conn.execute(
        "INSERT INTO events (id, type, target, shipment, created, body, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, TRACKING, CARRIER_TARGET, shipment["id"], int(now), json.dumps(body), now),
    )
    return event_id


def _move(
    conn: sqlite3.Connection, row: sqlite3.Row, *, occurred_at: float, step_s: float, psp_url: str
) -> dict[str, Any]:
    status = NEXT_STATUS[row["status"]]
    # The next status is due one step after this one; the last one schedules nothing.
    due_at = occurred_at + step_s if status in NEXT_STATUS else None
    conn.execute(
        "UPDATE shipments SET status = ?, due_at = ? WHERE id = ?", (status, due_at, row["id"])
    )
    shipment = _to_json(_require(conn, row["id"]), psp_url)
    _emit(conn, shipment, occurred_at)
    return shipment


def advance_shipment(
    conn: sqlite3.Connection, shipment_id: str, *, psp_url: str, step_s: float
) -> Outcome:
    """Test helper: the next status now, as if its step had come; the next step counts from now."""
    row = _require(conn, shipment_id)
    if row["status"] not in NEXT_STATUS:
        raise invalid_request(
            "shipment_unexpected_state",
            f"You cannot advance a shipment with status {row['status']}.",
        )
    return Outcome(200, _move(conn, row, occurred_at=time.time(), step_s=step_s, psp_url=psp_url))


def advance_due(conn: sqlite3.Connection, now: float, *, psp_url: str, step_s: float) -> int:
    """Move every shipment whose next status is due by one status; how many moved."""
    rows = conn.execute(
        "SELECT * FROM shipments WHERE due_at IS NOT NULL AND due_at <= ?", (now,)
    ).fetchall()
    moved = 0
    for row in rows:
        if row["status"] not in NEXT_STATUS:
            # Every write keeps due_at NULL on a final status; cleared anyway, or it stays due.
            conn.execute("UPDATE shipments SET due_at = NULL WHERE id = ?", (row["id"],))
            continue
        # Occurred at the due time rather than now: after a long stop, a restarted sandbox
        # catches up one status per pass, spaced as they were scheduled.
        _move(conn, row, occurred_at=row["due_at"], step_s=step_s, psp_url=psp_url)
        moved += 1
    return moved


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the next tracking status is due, None when no shipment is moving."""
    row = conn.execute("SELECT MIN(due_at) AS due FROM shipments").fetchone()
    return float(row["due"]) if row["due"] is not None else None


def list_events(conn: sqlite3.Connection, shipment_id: str | None, limit: int) -> dict[str, Any]:
    """Tracking events, newest first, each with its delivery state."""
    if shipment_id is None:
        rows = conn.execute(
            "SELECT * FROM events WHERE target = ? ORDER BY rowid DESC LIMIT ?",
            (CARRIER_TARGET, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM events WHERE shipment = ? ORDER BY rowid DESC LIMIT ?",
            (shipment_id, limit),
        ).fetchall()
    data = []
    for row in rows:
        event = json.loads(row["body"])
        event["shipment"] = row["shipment"]
        event["delivery"] = delivery_state(row)
        data.append(event)
    return {"object": "list", "data": data}


def label_pdf(shipment_id: str, tracking_number: str) -> bytes:
    """A minimal, valid one-page PDF naming the shipment."""
    text = f"SANDBOX LABEL {shipment_id} {tracking_number}".encode("ascii")
    stream = b"BT /F1 14 Tf 40 100 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 432 288]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
