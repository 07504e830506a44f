"""Payment intents, their charges, refunds and webhook events; synchronous, run inside a Store
transaction.

Each state change writes its event row in the same transaction, so an effect without its webhook
(or a webhook without its effect) cannot exist. The states are Stripe's: a declined card leaves
the intent `requires_payment_method` with its `last_payment_error` (and a failed charge that
says why), never a status Stripe does not have.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, fields
from typing import Any

from sandbox.psp import disputes, events, methods, objects, refunds
from sandbox.psp.errors import (
    card_error,
    invalid_request,
    invalid_value,
    resource_missing,
    unexpected_state,
)
from sandbox.psp.methods import PAYMENT_METHODS as PAYMENT_METHODS
from sandbox.psp.methods import TOK_FLAKY as TOK_FLAKY
from sandbox.psp.methods import behaviour_of as behaviour_of
from sandbox.psp.models import (
    CaptureRequest,
    ConfirmIntentRequest,
    CreateIntentRequest,
    Outcome,
    RefundRequest,
    new_id,
)
from sandbox.psp.webhooks import PAYMENTS_TARGET, delivery_state

AMOUNT_CAPTURABLE_UPDATED = "payment_intent.amount_capturable_updated"
PAYMENT_FAILED = "payment_intent.payment_failed"
SUCCEEDED = "payment_intent.succeeded"
CANCELED = "payment_intent.canceled"
CHARGE_REFUNDED = "charge.refunded"
DECLINED = "requires_payment_method"


@dataclass(frozen=True)
class Intent:
    """One row of payment_intents."""

    id: str
    amount: int
    currency: str
    token: str
    status: str
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    metadata: dict[str, str]
    next_action_url: str | None
    last_error_code: str | None
    last_error_message: str | None
    authorized: bool
    created: int
    canceled_at: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Intent:
        """Build from a `SELECT *` row: each field is its column; `metadata` is stored as JSON,
        `authorized` as 0 or 1."""
        values = {field.name: row[field.name] for field in fields(cls)}
        values.update(metadata=json.loads(row["metadata"]), authorized=bool(row["authorized"]))
        return cls(**values)

    @property
    def decline(self) -> methods.Decline | None:
        """The card decline that failed this intent, None when there was none."""
        return methods.decline_of(self.last_error_code)

    def to_json(self, *, latest_charge: dict[str, Any] | None = None) -> dict[str, Any]:
        """Stripe's PaymentIntent object; `latest_charge` expanded when given."""
        return objects.payment_intent(
            id=self.id,
            amount=self.amount,
            currency=self.currency,
            status=self.status,
            amount_capturable=self.amount_capturable,
            amount_received=self.amount_received,
            metadata=self.metadata,
            created=self.created,
            next_action_url=self.next_action_url,
            last_payment_error=self.last_payment_error(),
            # Refunds live on the charge, as at Stripe: `expand[]=latest_charge` shows them.
            latest_charge=latest_charge or self.charge_id(),
            canceled_at=self.canceled_at,
        )

    def charge_id(self) -> str | None:
        """The id of the intent's charge: its authorization, or its declined attempt."""
        if self.authorized or self.decline is not None:
            return refunds.charge_id_of(self.id)
        return None

    def charge_json(self, conn: sqlite3.Connection) -> dict[str, Any] | None:
        """Stripe's `charge` of the intent: what was authorized, captured and refunded."""
        charge_id = self.charge_id()
        if charge_id is None:
            return None
        decline = self.decline
        return objects.charge(
            id=charge_id,
            intent=self.to_json(),
            amount_refunded=self.amount_refunded,
            refunds=refunds.of_intent(conn, self.id),
            disputed=disputes.disputed(conn, self.id),
            failure=self.last_payment_error() if decline else None,
            blocked=decline is not None and decline.blocked,
        )

    def expanded(self, conn: sqlite3.Connection, expand: set[str]) -> dict[str, Any]:
        """The intent with the `expand[]` fields Stripe would expand (only `latest_charge`)."""
        if "latest_charge" in expand:
            return self.to_json(latest_charge=self.charge_json(conn))
        return self.to_json()

    def last_payment_error(self) -> dict[str, Any] | None:
        """Stripe's `last_payment_error`: the failure with its Stripe `code` and `decline_code`."""
        if self.last_error_code is None:
            return None
        decline = self.decline
        message = self.last_error_message or methods.GENERIC
        if decline is None:
            return {
                "type": "invalid_request_error",
                "code": methods.AUTHENTICATION_FAILURE_CODE,
                "doc_url": f"{objects.DOC_URL}payment-intent-authentication-failure",
                "message": message,
            }
        return objects.card_error(
            code=decline.code,
            decline_code=decline.decline_code,
            message=message,
            charge=self.charge_id(),
        )

    def ledger_entry(self) -> dict[str, Any]:
        """What `GET /v1/ledger` says about this intent."""
        return {
            "payment_intent": self.id,
            "status": self.status,
            "currency": self.currency,
            "amount": self.amount,
            "authorized": self.amount if self.authorized else 0,
            "captured": self.amount_received,
            "refunded": self.amount_refunded,
            "metadata": dict(self.metadata),
        }


def authenticate_url(psp_url: str, intent_id: str) -> str:
    """Where a customer approves (or fails) a 3DS challenge."""
    return f"{psp_url.rstrip('/')}/v1/test_helpers/3ds/{intent_id}/authenticate"


def load(conn: sqlite3.Connection, intent_id: str) -> Intent | None:
    """The intent, or None when unknown."""
    row = conn.execute("SELECT * FROM payment_intents WHERE id = ?", (intent_id,)).fetchone()
    return Intent.from_row(row) if row else None


def require(conn: sqlite3.Connection, intent_id: str, *, param: str | None = None) -> Intent:
    """The intent, or a resource_missing error."""
    intent = load(conn, intent_id)
    if intent is None:
        raise resource_missing("payment_intent", intent_id, param=param)
    return intent


def token_of(conn: sqlite3.Connection, intent_id: str) -> str | None:
    """The token of an intent (changed only by a confirmation with another payment method),
    None when unknown."""
    row = conn.execute("SELECT token FROM payment_intents WHERE id = ?", (intent_id,)).fetchone()
    return str(row["token"]) if row else None


def _update(conn: sqlite3.Connection, intent_id: str, **fields: object) -> Intent:
    # Column names come from this module only, never from a request.
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(
        f"UPDATE payment_intents SET {assignments} WHERE id = ?", (*fields.values(), intent_id)
    )
    return require(conn, intent_id)


def emit(conn: sqlite3.Connection, event_type: str, intent: Intent) -> str:
    """Record an event about the intent: for `charge.*` events its charge, as Stripe sends them."""
    if event_type.startswith("charge."):
        obj = intent.charge_json(conn)
        assert obj is not None, f"{event_type} of an intent without a charge"
    else:
        obj = intent.to_json()
    return events.record(conn, event_type, obj, intent.id)


def known_behaviour(req: CreateIntentRequest) -> str:
    """The tok_* behaviour of the request's payment method, or Stripe's refusal of it.

    Raised before anything is written, so an unknown payment method stores nothing and sends
    no event (and its Idempotency-Key stays free, as Stripe keeps no answer of a failed check).
    """
    if req.method is None:
        raise invalid_request(
            "parameter_missing", "Missing required param: payment_method.", param="payment_method"
        )
    token = behaviour_of(req.method)
    if token not in methods.TOKENS:
        raise resource_missing("PaymentMethod", req.method, param=req.method_param)
    return token


@dataclass(frozen=True)
class _Attempt:
    """What confirming an intent with a payment method leads to (the intent's columns)."""

    status: str
    amount_capturable: int
    authorized: bool
    next_action_url: str | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    due_at: float | None = None


def _attempt(
    token: str, intent_id: str, amount: int, *, psp_url: str, async_delay_s: float
) -> _Attempt:
    """Authorize according to the payment method: capturable, declined, 3DS, or processing."""
    if token in methods.DECLINES:
        decline = methods.DECLINES[token]
        return _Attempt(
            DECLINED, 0, False, last_error_code=token, last_error_message=decline.message
        )
    if token in methods.THREE_DS_TOKENS:
        return _Attempt("requires_action", 0, False, authenticate_url(psp_url, intent_id))
    if token == methods.TOK_ASYNC:
        # Scheduled in the row itself so that a restart still fires it (see scheduler.py).
        return _Attempt("processing", 0, False, due_at=time.time() + async_delay_s)
    return _Attempt("requires_capture", amount, True)


def _answer(conn: sqlite3.Connection, intent: Intent) -> Outcome:
    """A confirmation's answer, with its event when it was declined."""
    if intent.status == DECLINED:
        emit(conn, PAYMENT_FAILED, intent)
        return Outcome(402, declined(intent))
    return Outcome(200, intent.to_json())


def create_intent(
    conn: sqlite3.Connection, req: CreateIntentRequest, *, psp_url: str, async_delay_s: float
) -> Outcome:
    """Create and confirm: capturable, declined, 3DS, or processing by the payment method."""
    # The row keeps the tok_* name: every later step (capture, 3DS, tok_flaky) reads it.
    token = known_behaviour(req)
    intent_id = new_id("pi")
    attempt = _attempt(token, intent_id, req.amount, psp_url=psp_url, async_delay_s=async_delay_s)
    conn.execute(
        "INSERT INTO payment_intents (id, amount, currency, token, status, amount_capturable,"
        " metadata, checkout_id, next_action_url, last_error_code, last_error_message,"
        " authorized, due_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            intent_id,
            req.amount,
            req.currency,
            token,
            attempt.status,
            attempt.amount_capturable,
            json.dumps(req.metadata),
            req.metadata.get("checkout_id"),
            attempt.next_action_url,
            attempt.last_error_code,
            attempt.last_error_message,
            int(attempt.authorized),
            attempt.due_at,
            int(time.time()),
        ),
    )
    return _answer(conn, require(conn, intent_id))


# Stripe confirms an intent that waits for a payment method or a confirmation.
CONFIRMABLE = frozenset({DECLINED, "requires_confirmation"})


def confirm_intent(
    conn: sqlite3.Connection,
    intent_id: str,
    req: ConfirmIntentRequest,
    *,
    psp_url: str,
    async_delay_s: float,
) -> Outcome:
    """Confirm the intent again, with the payment method given (else the one it has): after a
    decline the same intent is tried with another card. As at Stripe, a success clears
    `last_payment_error`; another decline replaces it and the intent stays
    `requires_payment_method`; any other status is refused (payment_intent_unexpected_state)."""
    intent = require(conn, intent_id)
    if intent.status not in CONFIRMABLE:
        raise unexpected_state(intent.to_json(), "confirm")
    token = intent.token
    if req.payment_method is not None:
        token = behaviour_of(req.payment_method)
        if token not in methods.TOKENS:
            raise resource_missing("PaymentMethod", req.payment_method, param="payment_method")
    attempt = _attempt(
        token, intent_id, intent.amount, psp_url=psp_url, async_delay_s=async_delay_s
    )
    intent = _update(
        conn,
        intent_id,
        token=token,
        status=attempt.status,
        amount_capturable=attempt.amount_capturable,
        authorized=int(attempt.authorized),
        next_action_url=attempt.next_action_url,
        last_error_code=attempt.last_error_code,
        last_error_message=attempt.last_error_message,
        due_at=attempt.due_at,
    )
    return _answer(conn, intent)


def declined(intent: Intent) -> dict[str, Any]:
    """Stripe's answer to a declined confirmation: 402 `card_error` carrying the intent, back at
    `requires_payment_method` with its `last_payment_error`."""
    error = intent.last_payment_error() or {}
    return {"error": {**error, "payment_intent": intent.to_json()}}


def capture_intent(
    conn: sqlite3.Connection, intent_id: str, req: CaptureRequest, *, dispute_delay_s: float
) -> Outcome:
    """requires_capture -> succeeded for the amount asked (at most what is capturable)."""
    intent = require(conn, intent_id)
    if intent.status != "requires_capture":
        raise unexpected_state(intent.to_json(), "capture")
    amount = intent.amount_capturable if req.amount_to_capture is None else req.amount_to_capture
    if amount > intent.amount_capturable:
        raise invalid_request(
            "amount_too_large",
            f"amount_to_capture {amount} is more than amount_capturable {intent.amount_capturable}",
            param="amount_to_capture",
        )
    if intent.token == methods.TOK_CAPTURE_FAILS:
        # The decline is the provider's answer to an executed request, so it is stored and
        # replayed like a success; the authorization stays, so the intent can still be canceled.
        refusal = card_error(
            "card_declined",
            "generic_decline",
            "The capture was declined by the card issuer.",
            intent.to_json(),
        )
        return Outcome(402, refusal.body())
    intent = _update(
        conn, intent_id, status="succeeded", amount_capturable=0, amount_received=amount
    )
    emit(conn, SUCCEEDED, intent)
    if intent.token == methods.TOK_CREATE_DISPUTE:
        charge_id = intent.charge_id()
        assert charge_id is not None, "a captured intent has its charge"
        disputes.schedule(conn, intent.to_json(), charge_id, at=time.time() + dispute_delay_s)
    return Outcome(200, intent.to_json())


# Stripe cancels an intent in any state but succeeded and canceled.
CANCELABLE = frozenset(
    {DECLINED, "requires_confirmation", "requires_action", "processing", "requires_capture"}
)


def cancel_intent(conn: sqlite3.Connection, intent_id: str) -> Outcome:
    """Release the authorization; canceling a canceled intent is a no-op that succeeds."""
    intent = require(conn, intent_id)
    if intent.status == "canceled":
        return Outcome(200, intent.to_json())
    if intent.status not in CANCELABLE:
        raise unexpected_state(intent.to_json(), "cancel")
    # due_at cleared: a pending tok_async transition of a canceled intent must never fire.
    intent = _update(
        conn,
        intent_id,
        status="canceled",
        amount_capturable=0,
        next_action_url=None,
        due_at=None,
        canceled_at=int(time.time()),
    )
    emit(conn, CANCELED, intent)
    return Outcome(200, intent.to_json())


def create_refund(
    conn: sqlite3.Connection, req: RefundRequest, *, refund_fail_delay_s: float
) -> Outcome:
    """Refund part or all of what was captured and not yet refunded.

    A card refund succeeds at once; one to pm_card_refundFail stays `pending` and fails later
    (refunds.fail_due), giving the money back to the charge.
    """
    intent = require(conn, req.payment_intent, param="payment_intent")
    if intent.status != "succeeded":
        raise unexpected_state(intent.to_json(), "refund")
    remaining = intent.amount_received - intent.amount_refunded
    if remaining <= 0:
        raise invalid_request(
            "charge_already_refunded",
            f"PaymentIntent {intent.id} has already been refunded in full.",
            param="payment_intent",
        )
    amount = remaining if req.amount is None else req.amount
    if amount > remaining:
        raise invalid_request(
            "amount_too_large",
            f"Refund amount {amount} is greater than the {remaining} left to refund.",
            param="amount",
        )
    now = time.time()
    fails = intent.token == methods.TOK_REFUND_FAIL
    refund_id = new_id("re")
    conn.execute(
        "INSERT INTO refunds (id, payment_intent, amount, currency, reason, metadata, created,"
        " status, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            refund_id,
            intent.id,
            amount,
            intent.currency,
            req.reason,
            json.dumps(req.metadata),
            int(now),
            "pending" if fails else "succeeded",
            now + refund_fail_delay_s if fails else None,
        ),
    )
    intent = _update(conn, intent.id, amount_refunded=intent.amount_refunded + amount)
    emit(conn, CHARGE_REFUNDED, intent)
    return Outcome(200, refunds.get(conn, refund_id))


def authenticate(conn: sqlite3.Connection, intent_id: str) -> Intent:
    """The customer finishes the 3DS challenge: approved, failed, or ignored (tok_no_webhook)."""
    intent = require(conn, intent_id)
    # Anything but a pending challenge (a second visit, a canceled intent) changes nothing.
    if intent.status != "requires_action":
        return intent
    if intent.token == methods.TOK_3DS:
        intent = _update(
            conn,
            intent_id,
            status="requires_capture",
            amount_capturable=intent.amount,
            authorized=1,
            next_action_url=None,
        )
        emit(conn, AMOUNT_CAPTURABLE_UPDATED, intent)
    elif intent.token == methods.TOK_3DS_FAIL:
        # As at Stripe: back to requires_payment_method, the failure in last_payment_error.
        intent = _update(
            conn,
            intent_id,
            status=DECLINED,
            next_action_url=None,
            last_error_code=methods.AUTHENTICATION_FAILED,
            last_error_message=(
                "The provided PaymentMethod has failed authentication. You can provide"
                " payment_method_data or a new PaymentMethod to attempt to fulfill this"
                " PaymentIntent again."
            ),
        )
        emit(conn, PAYMENT_FAILED, intent)
    return intent


def settle_due(conn: sqlite3.Connection, now: float) -> int:
    """Move every tok_async intent whose time has come to requires_capture; how many moved."""
    rows = conn.execute(
        "SELECT id FROM payment_intents WHERE due_at IS NOT NULL AND due_at <= ?", (now,)
    ).fetchall()
    moved = 0
    for row in rows:
        intent = require(conn, row["id"])
        if intent.status != "processing":
            _update(conn, intent.id, due_at=None)
            continue
        intent = _update(
            conn,
            intent.id,
            status="requires_capture",
            amount_capturable=intent.amount,
            authorized=1,
            due_at=None,
        )
        emit(conn, AMOUNT_CAPTURABLE_UPDATED, intent)
        moved += 1
    return moved


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the next tok_async transition is due, None when none is pending."""
    row = conn.execute("SELECT MIN(due_at) AS due FROM payment_intents").fetchone()
    return float(row["due"]) if row["due"] is not None else None


def ledger(conn: sqlite3.Connection, checkout_id: str | None) -> dict[str, Any]:
    """Every intent (or those of one checkout) with its authorized, captured, refunded amounts."""
    if checkout_id is None:
        rows = conn.execute("SELECT * FROM payment_intents ORDER BY created, rowid").fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM payment_intents WHERE checkout_id = ? ORDER BY created, rowid",
            (checkout_id,),
        ).fetchall()
    return {"object": "list", "data": [Intent.from_row(row).ledger_entry() for row in rows]}


def list_events(conn: sqlite3.Connection, payment_intent: str | None, limit: int) -> dict[str, Any]:
    """Payment webhook events, newest first, each with its delivery state."""
    if payment_intent is None:
        rows = conn.execute(
            "SELECT * FROM events WHERE target = ? ORDER BY rowid DESC LIMIT ?",
            (PAYMENTS_TARGET, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM events WHERE payment_intent = ? ORDER BY rowid DESC LIMIT ?",
            (payment_intent, limit),
        ).fetchall()
    data = []
    for row in rows:
        event = json.loads(row["body"])
        event["payment_intent"] = row["payment_intent"]
        event["delivery"] = delivery_state(row)
        data.append(event)
    return {"object": "list", "data": data}


# One clause of Stripe's search query language the sandbox understands: metadata['key']:'value'.
_METADATA_CLAUSE = re.compile(r"^metadata\['([^'\]]+)'\]:'([^']*)'$")
SEARCH_LIMIT_MAX = 100


def search(conn: sqlite3.Connection, query: str, limit: int) -> dict[str, Any]:
    """`GET /v1/payment_intents/search`: intents whose metadata match every clause (joined by
    AND), newest first, as Stripe's `search_result` list. Other clauses are refused (400)."""
    wanted: dict[str, str] = {}
    for clause in re.split(r"\s+AND\s+", query.strip()):
        match = _METADATA_CLAUSE.match(clause.strip())
        if match is None:
            raise invalid_value(
                f"The sandbox searches payment intents by metadata['key']:'value' clauses only,"
                f" got {clause!r}.",
                param="query",
            )
        wanted[match.group(1)] = match.group(2)
    rows = conn.execute("SELECT * FROM payment_intents ORDER BY created DESC, rowid DESC")
    found = [
        intent.to_json()
        for intent in map(Intent.from_row, rows)
        if all(intent.metadata.get(k) == v for k, v in wanted.items())
    ]
    return {
        "object": "search_result",
        "data": found[:limit],
        "has_more": len(found) > limit,
        "next_page": None,
        "url": "/v1/payment_intents/search",
    }
