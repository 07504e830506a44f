"""Shipments, labels and trackers; every function runs in a Store transaction (or read).

A shipment is kept as the Shipment object last answered (`body`), beside what the timers need: its
tracker's status and when the next one is due. A bought label's parcel moves on its own, one
status per step, its next due time stored in the row so that a restart resumes it; each move
writes its `tracker.updated` event in the same transaction, so a status without its webhook (or a
webhook without its status) cannot exist.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.easypost import objects
from sandbox.psp.webhooks import CARRIER_TARGET, delivery_state

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS easypost_shipments (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    tracking_code TEXT UNIQUE,
    -- The tracker's status once a label is bought; NULL before.
    tracker_status TEXT,
    -- When the tracker's next status is due; NULL once nothing moves it on its own.
    due_at REAL,
    created REAL NOT NULL
)
""",
    """
CREATE INDEX IF NOT EXISTS easypost_shipments_due_at
    ON easypost_shipments (due_at) WHERE due_at IS NOT NULL
""",
)
TRACKER_UPDATED = "tracker.updated"


class EasyPostApiError(Exception):
    """An answer other than success, in EasyPost's error shape; raised before any effect."""

    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return objects.error(self.code, self.message, self.errors)


Positive = Annotated[Decimal, Field(gt=0, max_digits=9, decimal_places=2)]


class ParcelParams(BaseModel):
    """A parcel: weight in ounces, dimensions in inches."""

    model_config = ConfigDict(extra="allow")
    weight: Positive
    length: Positive | None = None
    width: Positive | None = None
    height: Positive | None = None


class ShipmentParams(BaseModel):
    """`POST /v2/shipments` `{"shipment": {...}}`: the fields the sandbox uses (others kept)."""

    model_config = ConfigDict(extra="allow")
    to_address: dict[str, Any]
    from_address: dict[str, Any]
    parcel: ParcelParams
    reference: str | None = None
    is_return: bool = False
    options: dict[str, Any] = Field(default_factory=dict)


def create_schema(conn: sqlite3.Connection) -> None:
    """The sandbox's EasyPost tables (idempotent)."""
    for statement in SCHEMA:
        conn.execute(statement)


def parse_shipment(document: object) -> ShipmentParams:
    """The `shipment` parameter of a create. Without one, 422 `PARAMETER.REQUIRED`; an invalid
    parcel 422 `PARCEL.PARAMETERS.INVALID`, anything else invalid 422 `SHIPMENT.INVALID_PARAMS`,
    each problem named in `errors` (EasyPost's codes and shape)."""
    if not isinstance(document, dict) or not document.get("shipment"):
        raise EasyPostApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [{"field": "shipment", "message": "cannot be blank"}],
        )
    try:
        return ShipmentParams.model_validate(document["shipment"])
    except ValidationError as exc:
        problems = [
            {"field": ".".join(["shipment", *map(str, e["loc"])]), "message": e["msg"]}
            for e in exc.errors()
        ]
        parcel = any(e["loc"][:1] == ("parcel",) for e in exc.errors())
        code = "PARCEL.PARAMETERS.INVALID" if parcel else "SHIPMENT.INVALID_PARAMS"
        raise EasyPostApiError(
            422, code, "The shipment's parameters are invalid.", problems
        ) from exc


def _require(conn: sqlite3.Connection, shipment_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM easypost_shipments WHERE id = ?", (shipment_id,)
    ).fetchone()
    if row is None:
        raise EasyPostApiError(404, "NOT_FOUND", "The requested resource could not be found.")
    return row


def _save(conn: sqlite3.Connection, shipment: dict[str, Any], **columns: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in ("body", *columns))
    conn.execute(
        f"UPDATE easypost_shipments SET {assignments} WHERE id = ?",
        (json.dumps(shipment), *columns.values(), shipment["id"]),
    )


def create_shipment(conn: sqlite3.Connection, params: ShipmentParams) -> dict[str, Any]:
    """A shipment with a rate per service that carries it (none for an unserviceable address):
    USPS's domestic services within the US, its international ones to or from elsewhere."""
    now = time.time()
    shipment_id = objects.new_id("shp")
    weight = params.parcel.weight
    unserviceable = str(params.to_address.get("zip", "")).strip() == objects.UNSERVICEABLE_ZIP
    carried = objects.services(
        objects.country(params.to_address), objects.country(params.from_address), weight
    )
    rates = (
        []
        if unserviceable
        else [
            objects.rate(service, shipment_id=shipment_id, weight_oz=weight, at=now)
            for service in carried
        ]
    )
    messages = [objects.message("Unable to deliver here.")] if unserviceable else []
    parcel = params.parcel.model_dump(mode="json", exclude_none=True)
    shipment = {
        "id": shipment_id,
        "object": "Shipment",
        "created_at": objects.timestamp(now),
        "updated_at": objects.timestamp(now),
        "mode": objects.MODE,
        "is_return": params.is_return,
        "reference": params.reference,
        "status": "unknown",
        "tracking_code": None,
        "to_address": objects.address(params.to_address, now),
        "from_address": objects.address(params.from_address, now),
        "return_address": objects.address(params.from_address, now),
        "buyer_address": objects.address(params.to_address, now),
        "parcel": objects.parcel({**parcel, "weight": float(weight)}, now),
        "options": {"currency": objects.CURRENCY, **params.options},
        "messages": messages,
        "rates": rates,
        "selected_rate": None,
        "postage_label": None,
        "tracker": None,
        "refund_status": None,
        "insurance": None,
        "fees": [],
        "forms": [],
        "usps_zone": objects.usps_zone(
            str(params.to_address.get("zip") or ""), str(params.from_address.get("zip") or "")
        ),
        # Always sent by EasyPost; the sandbox has no batches, customs forms, orders or scan forms.
        **dict.fromkeys(("batch_id", "batch_status", "batch_message", "customs_info"), None),
        **dict.fromkeys(("order_id", "scan_form"), None),
    }
    conn.execute(
        "INSERT INTO easypost_shipments (id, body, created) VALUES (?, ?, ?)",
        (shipment_id, json.dumps(shipment), now),
    )
    return shipment


def get_shipment(conn: sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    """The shipment as last answered, or 404."""
    body: dict[str, Any] = json.loads(_require(conn, shipment_id)["body"])
    return body


def _tracking_code(conn: sqlite3.Connection) -> str:
    # Random rather than sequential so codes never repeat across wiped databases either.
    while True:
        candidate = f"9400{secrets.randbelow(10**18):018d}"
        taken = conn.execute(
            "SELECT 1 FROM easypost_shipments WHERE tracking_code = ?", (candidate,)
        ).fetchone()
        if taken is None:
            return candidate


def buy(
    conn: sqlite3.Connection, shipment_id: str, rate_id: str, *, base_url: str, step_s: float
) -> dict[str, Any]:
    """Buy one of the shipment's rates: a label and a tracker at `pre_transit`.

    A shipment is bought once: a second buy answers 422 `SHIPMENT.POSTAGE.EXISTS`, as EasyPost
    does (a client retrying a buy whose answer it lost re-reads the shipment instead).
    """
    shipment = get_shipment(conn, shipment_id)
    if shipment["postage_label"] is not None:
        raise EasyPostApiError(
            422, "SHIPMENT.POSTAGE.EXISTS", "Postage already exists for this shipment."
        )
    chosen = next((r for r in shipment["rates"] if r["id"] == rate_id), None)
    if chosen is None:
        raise EasyPostApiError(
            422,
            "SHIPMENT.INVALID_PARAMS",
            "The rate is not one of this shipment's rates.",
            [{"field": "rate.id", "message": "is not one of this shipment's rates"}],
        )
    now = time.time()
    code = _tracking_code(conn)
    tracker = objects.tracker(
        shipment_id=shipment_id,
        tracking_code=code,
        public_url=f"{base_url}/trackers/{code}",
        at=now,
        is_return=shipment["is_return"],
    )
    shipment.update(
        selected_rate=chosen,
        tracking_code=code,
        status=tracker["status"],
        postage_label=objects.postage_label(f"{base_url}/labels/{shipment_id}.pdf", now),
        tracker=tracker,
        updated_at=objects.timestamp(now),
    )
    _save(conn, shipment, tracking_code=code, tracker_status=tracker["status"], due_at=now + step_s)
    return shipment


def refund(conn: sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    """Void the label: `refund_status` `submitted` while the parcel has not moved (it then never
    will), `rejected` once the carrier has it; refunding again answers the shipment as it is."""
    shipment = get_shipment(conn, shipment_id)
    if shipment["postage_label"] is None:
        raise EasyPostApiError(
            422, "SHIPMENT.REFUND.UNAVAILABLE", "This shipment has no postage to refund."
        )
    if shipment["refund_status"] is not None:
        return shipment
    if shipment["tracker"]["status"] == objects.ROUTE[0]:
        shipment["refund_status"] = "submitted"
        shipment["tracker"]["finalized"] = True
        _save(conn, shipment, due_at=None)
    else:
        shipment["refund_status"] = "rejected"
        _save(conn, shipment)
    return shipment


def _emit(
    conn: sqlite3.Connection, shipment_id: str, tracker: dict[str, Any], previous: str
) -> None:
    """Record a `tracker.updated` event carrying the tracker as it is now; the loop sends it."""
    now = time.time()
    event = objects.event(TRACKER_UPDATED, tracker, {"status": previous}, now)
    conn.execute(
        "INSERT INTO events (id, type, target, shipment, created, body, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event["id"],
            TRACKER_UPDATED,
            CARRIER_TARGET,
            shipment_id,
            int(now),
            json.dumps(event),
            now,
        ),
    )


def _move(
    conn: sqlite3.Connection, row: sqlite3.Row, *, at: float, step_s: float
) -> dict[str, Any]:
    shipment: dict[str, Any] = json.loads(row["body"])
    tracker = shipment["tracker"]
    previous = tracker["status"]
    status = objects.NEXT_STATUS[previous]
    tracker.update(
        status=status,
        status_detail="arrived_at_destination" if status == "delivered" else "status_update",
        finalized=status not in objects.NEXT_STATUS,
        updated_at=objects.timestamp(at),
        tracking_details=[*tracker["tracking_details"], objects.tracking_detail(status, at)],
    )
    shipment.update(status=status, updated_at=objects.timestamp(at))
    # The next status is due one step after this one; the last one schedules nothing.
    due_at = at + step_s if status in objects.NEXT_STATUS else None
    _save(conn, shipment, tracker_status=status, due_at=due_at)
    _emit(conn, shipment["id"], tracker, previous)
    return shipment


def advance(conn: sqlite3.Connection, shipment_id: str, *, step_s: float) -> dict[str, Any]:
    """Test helper: the tracker's next status now; the next step counts from now."""
    row = _require(conn, shipment_id)
    shipment = json.loads(row["body"])
    if row["tracker_status"] not in objects.NEXT_STATUS or shipment["refund_status"] == "submitted":
        raise EasyPostApiError(
            422, "SHIPMENT.TRACKER.FINAL", "This shipment's tracker cannot move on."
        )
    return _move(conn, row, at=time.time(), step_s=step_s)


def advance_due(conn: sqlite3.Connection, now: float, *, step_s: float) -> int:
    """Move every tracker whose next status is due by one status; how many moved."""
    rows = conn.execute(
        "SELECT * FROM easypost_shipments WHERE due_at IS NOT NULL AND due_at <= ?", (now,)
    ).fetchall()
    for row in rows:
        # Occurred at the due time rather than now: after a long stop, a restarted sandbox
        # catches up one status per pass, spaced as they were scheduled.
        _move(conn, row, at=row["due_at"], step_s=step_s)
    return len(rows)


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the next tracker status is due, None when no parcel is moving."""
    row = conn.execute("SELECT MIN(due_at) AS due FROM easypost_shipments").fetchone()
    return float(row["due"]) if row["due"] is not None else None


def list_events(conn: sqlite3.Connection, shipment_id: str | None, limit: int) -> dict[str, Any]:
    """The carrier's events, newest first, each with its shipment and delivery state (a sandbox
    extension of EasyPost's event list, for tests and audits)."""
    if shipment_id is None:
        rows = conn.execute(
            "SELECT * FROM events WHERE target = ? ORDER BY rowid DESC LIMIT ?",
            (CARRIER_TARGET, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM events WHERE target = ? AND shipment = ? ORDER BY rowid DESC LIMIT ?",
            (CARRIER_TARGET, shipment_id, limit),
        ).fetchall()
    events = []
    for row in rows:
        event = json.loads(row["body"])
        event["shipment"] = row["shipment"]
        event["delivery"] = delivery_state(row)
        events.append(event)
    return {"events": events, "has_more": False}


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
