"""Carrier bookings (labels and tracking numbers); synchronous, run inside a Store transaction."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from sandbox.psp.errors import invalid_request, resource_missing
from sandbox.psp.models import Outcome, ShipmentRequest, new_id

CARRIER = "sandbox"
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


def create_shipment(conn: sqlite3.Connection, req: ShipmentRequest, *, psp_url: str) -> Outcome:
    """Book a shipment: a label and a tracking number, at once."""
    if str(req.ship_to.get("postal_code", "")).strip() == UNDELIVERABLE_POSTAL_CODE:
        raise invalid_request(
            "address_undeliverable",
            "The carrier does not deliver to this address.",
            param="ship_to",
        )
    shipment_id = new_id("shp")
    conn.execute(
        "INSERT INTO shipments (id, reference, ship_to, tracking_number, status, created)"
        " VALUES (?, ?, ?, ?, 'label_created', ?)",
        (
            shipment_id,
            req.reference,
            json.dumps(req.ship_to),
            _tracking_number(conn),
            int(time.time()),
        ),
    )
    return Outcome(201, _to_json(_require(conn, shipment_id), psp_url))


def cancel_shipment(conn: sqlite3.Connection, shipment_id: str, *, psp_url: str) -> Outcome:
    """Void the label; cancelling a cancelled shipment succeeds and changes nothing."""
    row = _require(conn, shipment_id)
    if row["status"] not in ("label_created", "cancelled"):
        # Unreachable until tracking events exist: a shipment in transit cannot be cancelled.
        raise invalid_request(
            "shipment_unexpected_state",
            f"You cannot cancel a shipment with status {row['status']}.",
        )
    conn.execute("UPDATE shipments SET status = 'cancelled' WHERE id = ?", (shipment_id,))
    return Outcome(200, _to_json(_require(conn, shipment_id), psp_url))


def get_shipment(conn: sqlite3.Connection, shipment_id: str, *, psp_url: str) -> dict[str, Any]:
    """The shipment, or resource_missing."""
    return _to_json(_require(conn, shipment_id), psp_url)


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
