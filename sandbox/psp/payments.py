"""Payment intents, refunds and their webhook events; synchronous, run inside a Store transaction.

Each state change writes its event row in the same transaction, so an effect without its webhook
(or a webhook without its effect) cannot exist.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sandbox.psp.errors import card_error, invalid_request, resource_missing, unexpected_state
from sandbox.psp.models import (
    CaptureRequest,
    CreateIntentRequest,
    Outcome,
    RefundRequest,
    new_id,
)
from sandbox.psp.webhooks import PAYMENTS_TARGET, delivery_state

TOK_VISA = "tok_visa"
TOK_3DS = "tok_3ds"
TOK_3DS_FAIL = "tok_3ds_fail"
TOK_ASYNC = "tok_async"
TOK_NO_WEBHOOK = "tok_no_webhook"
TOK_FLAKY = "tok_flaky"
TOK_CAPTURE_FAILS = "tok_capture_fails"
DECLINES: dict[str, tuple[str, str]] = {
    "tok_declined": ("card_declined", "Your card was declined."),
    "tok_insufficient_funds": ("insufficient_funds", "Your card has insufficient funds."),
}
TOKENS = frozenset(
    {
        TOK_VISA,
        TOK_3DS,
        TOK_3DS_FAIL,
        TOK_ASYNC,
        TOK_NO_WEBHOOK,
        TOK_FLAKY,
        TOK_CAPTURE_FAILS,
        *DECLINES,
    }
)
# Tokens that stop at requires_action until somebody visits next_action.url.
THREE_DS_TOKENS = frozenset({TOK_3DS, TOK_3DS_FAIL, TOK_NO_WEBHOOK})
# Stripe's test payment methods (CONTRACT.md §6), each the same behaviour as its tok_* alias.
PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": TOK_VISA,
    "pm_card_chargeDeclined": "tok_declined",
    "pm_card_chargeDeclinedInsufficientFunds": "tok_insufficient_funds",
    "pm_card_threeDSecure2Required": TOK_3DS,
    "pm_sandbox_3ds_fail": TOK_3DS_FAIL,
    "pm_sandbox_async": TOK_ASYNC,
    "pm_sandbox_no_webhook": TOK_NO_WEBHOOK,
    "pm_sandbox_flaky": TOK_FLAKY,
    "pm_sandbox_capture_fails": TOK_CAPTURE_FAILS,
}


# Stripe's `last_payment_error` for each error the sandbox stores: (type, code, decline_code).
STRIPE_ERRORS: dict[str, tuple[str, str, str | None]] = {
    "card_declined": ("card_error", "card_declined", "generic_decline"),
    "insufficient_funds": ("card_error", "card_declined", "insufficient_funds"),
    "authentication_failed": (
        "invalid_request_error",
        "payment_intent_authentication_failure",
        None,
    ),
}


def behaviour_of(name: str) -> str:
    """The tok_* name whose behaviour a token or payment method has (unknown names unchanged)."""
    return PAYMENT_METHODS.get(name, name)


AMOUNT_CAPTURABLE_UPDATED = "payment_intent.amount_capturable_updated"
PAYMENT_FAILED = "payment_intent.payment_failed"
SUCCEEDED = "payment_intent.succeeded"
CANCELED = "payment_intent.canceled"
CHARGE_REFUNDED = "charge.refunded"


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Intent:
        """Build from a `SELECT *` row."""
        return cls(
            id=row["id"],
            amount=row["amount"],
            currency=row["currency"],
            token=row["token"],
            status=row["status"],
            amount_capturable=row["amount_capturable"],
            amount_received=row["amount_received"],
            amount_refunded=row["amount_refunded"],
            metadata=json.loads(row["metadata"]),
            next_action_url=row["next_action_url"],
            last_error_code=row["last_error_code"],
            last_error_message=row["last_error_message"],
            authorized=bool(row["authorized"]),
            created=row["created"],
        )

    def to_json(self) -> dict[str, Any]:
        """The Stripe-shaped PaymentIntent object."""
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "capture_method": "manual",
            "amount_capturable": self.amount_capturable,
            "amount_received": self.amount_received,
            "metadata": dict(self.metadata),
            "next_action": (
                {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": self.next_action_url, "return_url": None},
                }
                if self.next_action_url
                else None
            ),
            "last_payment_error": self.last_payment_error(),
            # Refunds live on the charge, as at Stripe: `expand[]=latest_charge` shows them.
            "latest_charge": self.charge_id(),
            "created": self.created,
            "livemode": False,
        }

    def charge_id(self) -> str | None:
        """The id of the authorization's charge (the sandbox derives it; none before one)."""
        return f"ch_{self.id.removeprefix('pi_')}" if self.authorized else None

    def charge_json(self) -> dict[str, Any]:
        """Stripe's `charge` of an authorized intent: what was captured and refunded."""
        return {
            "id": self.charge_id(),
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount_received,
            "amount_refunded": self.amount_refunded,
            "captured": self.amount_received > 0,
            "refunded": 0 < self.amount_received <= self.amount_refunded,
            "currency": self.currency,
            "payment_intent": self.id,
            "metadata": dict(self.metadata),
            "paid": True,
            "status": "succeeded",
            "created": self.created,
            "livemode": False,
        }

    def expanded(self, expand: set[str]) -> dict[str, Any]:
        """The intent with the `expand[]` fields Stripe would expand (only `latest_charge`)."""
        body = self.to_json()
        if "latest_charge" in expand and self.authorized:
            body["latest_charge"] = self.charge_json()
        return body

    def last_payment_error(self) -> dict[str, Any] | None:
        """Stripe's `last_payment_error`: the failure with its Stripe `code` and `decline_code`."""
        if self.last_error_code is None:
            return None
        type_, code, decline_code = STRIPE_ERRORS.get(
            self.last_error_code, ("card_error", self.last_error_code, None)
        )
        error: dict[str, Any] = {"type": type_, "code": code, "message": self.last_error_message}
        if decline_code is not None:
            error["decline_code"] = decline_code
        return error

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
    """The token an intent was created with (it never changes), None when unknown."""
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
    """Record a webhook event carrying the intent as it is now (for `charge.*` events its
    charge, as Stripe sends them); the delivery loop sends it."""
    now = time.time()
    event_id = new_id("evt")
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(now),
        "livemode": False,
        "data": {
            "object": intent.charge_json() if event_type.startswith("charge.") else intent.to_json()
        },
    }
    conn.execute(
        "INSERT INTO events (id, type, target, payment_intent, created, body, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, event_type, PAYMENTS_TARGET, intent.id, int(now), json.dumps(body), now),
    )
    return event_id


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
    if token not in TOKENS:
        raise resource_missing("PaymentMethod", req.method, param=req.method_param)
    return token


def create_intent(
    conn: sqlite3.Connection, req: CreateIntentRequest, *, psp_url: str, async_delay_s: float
) -> Outcome:
    """Authorize according to the payment method: capturable, declined, 3DS, or processing."""
    # The row keeps the tok_* name: every later step (capture, 3DS, tok_flaky) reads it.
    token = known_behaviour(req)
    now = time.time()
    intent_id = new_id("pi")
    status, capturable, authorized = "requires_capture", req.amount, True
    next_action_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    due_at: float | None = None
    if token in DECLINES:
        status, capturable, authorized = "failed", 0, False
        error_code, error_message = DECLINES[token]
    elif token in THREE_DS_TOKENS:
        status, capturable, authorized = "requires_action", 0, False
        next_action_url = authenticate_url(psp_url, intent_id)
    elif token == TOK_ASYNC:
        # Scheduled in the row itself so that a restart still fires it (see scheduler.py).
        status, capturable, authorized = "processing", 0, False
        due_at = now + async_delay_s
    conn.execute(
        "INSERT INTO payment_intents (id, amount, currency, token, status, amount_capturable,"
        " metadata, checkout_id, next_action_url, last_error_code, last_error_message,"
        " authorized, due_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            intent_id,
            req.amount,
            req.currency,
            token,
            status,
            capturable,
            json.dumps(req.metadata),
            req.metadata.get("checkout_id"),
            next_action_url,
            error_code,
            error_message,
            int(authorized),
            due_at,
            int(now),
        ),
    )
    intent = require(conn, intent_id)
    if status == "failed":
        emit(conn, PAYMENT_FAILED, intent)
        return Outcome(402, declined(intent))
    return Outcome(200, intent.to_json())


def declined(intent: Intent) -> dict[str, Any]:
    """Stripe's answer to a declined confirmation: 402 `card_error` carrying the failed intent."""
    error = intent.last_payment_error() or {}
    return card_error(
        str(error.get("code", "card_declined")),
        error.get("decline_code"),
        str(error.get("message") or "Your card was declined."),
        intent.to_json(),
    ).body()


def capture_intent(conn: sqlite3.Connection, intent_id: str, req: CaptureRequest) -> Outcome:
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
    if intent.token == TOK_CAPTURE_FAILS:
        # The decline is the provider's answer to an executed request, so it is stored and
        # replayed like a success; the authorization stays, so the intent can still be canceled.
        refusal = card_error(
            "capture_declined",
            "generic_decline",
            "The capture was declined by the card issuer.",
            intent.to_json(),
        )
        return Outcome(402, refusal.body())
    intent = _update(
        conn, intent_id, status="succeeded", amount_capturable=0, amount_received=amount
    )
    emit(conn, SUCCEEDED, intent)
    return Outcome(200, intent.to_json())


CANCELABLE = frozenset({"requires_action", "processing", "requires_capture"})


def cancel_intent(conn: sqlite3.Connection, intent_id: str) -> Outcome:
    """Release the authorization; canceling a canceled intent is a no-op that succeeds."""
    intent = require(conn, intent_id)
    if intent.status == "canceled":
        return Outcome(200, intent.to_json())
    if intent.status not in CANCELABLE:
        raise unexpected_state(intent.to_json(), "cancel")
    # due_at cleared: a pending tok_async transition of a canceled intent must never fire.
    intent = _update(
        conn, intent_id, status="canceled", amount_capturable=0, next_action_url=None, due_at=None
    )
    emit(conn, CANCELED, intent)
    return Outcome(200, intent.to_json())


def create_refund(conn: sqlite3.Connection, req: RefundRequest) -> Outcome:
    """Refund part or all of what was captured and not yet refunded."""
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
    now = int(time.time())
    refund_id = new_id("re")
    conn.execute(
        "INSERT INTO refunds (id, payment_intent, amount, currency, reason, metadata, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (refund_id, intent.id, amount, intent.currency, req.reason, json.dumps(req.metadata), now),
    )
    intent = _update(conn, intent.id, amount_refunded=intent.amount_refunded + amount)
    emit(conn, CHARGE_REFUNDED, intent)
    return Outcome(
        200,
        {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "currency": intent.currency,
            "payment_intent": intent.id,
            "status": "succeeded",
            "reason": req.reason,
            "metadata": dict(req.metadata),
            "created": now,
        },
    )


def authenticate(conn: sqlite3.Connection, intent_id: str) -> Intent:
    """The customer finishes the 3DS challenge: approved, failed, or ignored (tok_no_webhook)."""
    intent = require(conn, intent_id)
    # Anything but a pending challenge (a second visit, a canceled intent) changes nothing.
    if intent.status != "requires_action":
        return intent
    if intent.token == TOK_3DS:
        intent = _update(
            conn,
            intent_id,
            status="requires_capture",
            amount_capturable=intent.amount,
            authorized=1,
            next_action_url=None,
        )
        emit(conn, AMOUNT_CAPTURABLE_UPDATED, intent)
    elif intent.token == TOK_3DS_FAIL:
        intent = _update(
            conn,
            intent_id,
            status="failed",
            next_action_url=None,
            last_error_code="authentication_failed",
            last_error_message="The customer failed 3D Secure authentication.",
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
