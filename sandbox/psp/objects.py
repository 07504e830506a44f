"""Stripe's objects as the sandbox sends them: every property Stripe always sends, null where the
sandbox has nothing to say (no customer, no Connect, no statement descriptor).

The shapes follow the API version of the platform's pinned `stripe` package; the conformance
tests (tests/sandbox/test_conformance.py) validate every object of every scenario against the
schemas vendored for that version, so a field Stripe would not send, or a status it does not
have, fails there.
"""

from __future__ import annotations

import hashlib
from typing import Any, get_args

from sandbox.psp.models import EvidenceField

# The API version whose objects these are (the pinned SDK's; a test keeps the two equal).
API_VERSION = "2026-10-28.endive"
DOC_URL = "https://docs.stripe.com/error-codes/"
# Every field of a dispute's evidence (null until the merchant answers).
EVIDENCE_FIELDS: tuple[str, ...] = get_args(EvidenceField)
# Properties no sandbox object ever has a value for (customers, Connect, descriptors, reviews).
_NULL_INTENT = (
    "application",
    "application_fee_amount",
    "automatic_payment_methods",
    "customer",
    "customer_account",
    "description",
    "excluded_payment_method_types",
    "managed_payments",
    "on_behalf_of",
    "payment_method_configuration_details",
    "processing",
    "receipt_email",
    "review",
    "setup_future_usage",
    "shipping",
    "source",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
)
_NULL_CHARGE = (
    "application",
    "application_fee",
    "application_fee_amount",
    "balance_transaction",
    "customer",
    "description",
    "failure_balance_transaction",
    "on_behalf_of",
    "payment_method_details",
    "receipt_email",
    "receipt_number",
    "receipt_url",
    "review",
    "shipping",
    "source",
    "source_transfer",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
)
_NULL_REFUND = (
    "balance_transaction",
    "customer",
    "customer_account",
    "receipt_number",
    "source_transfer_reversal",
    "transfer_reversal",
)


def derived_id(prefix: str, of: str) -> str:
    """A stable id derived from another object's (the card behind an intent, its secret)."""
    return f"{prefix}_{hashlib.sha256(of.encode()).hexdigest()[:24]}"


def _object(
    kind: str, id: str, always_null: tuple[str, ...], fields: dict[str, Any]
) -> dict[str, Any]:
    """A Stripe object of type `kind`: its id, the properties it always sends as null, then its
    `fields`."""
    return {**dict.fromkeys(always_null), "id": id, "object": kind, **fields}


def payment_intent(
    *,
    id: str,
    amount: int,
    currency: str,
    status: str,
    amount_capturable: int,
    amount_received: int,
    metadata: dict[str, str],
    created: int,
    next_action_url: str | None,
    last_payment_error: dict[str, Any] | None,
    latest_charge: str | dict[str, Any] | None,
    canceled_at: int | None,
) -> dict[str, Any]:
    """A PaymentIntent: card only, manual capture, confirmed at creation."""
    return _object(
        "payment_intent",
        id,
        _NULL_INTENT,
        {
            "amount": amount,
            "amount_capturable": amount_capturable,
            "amount_details": {"tip": {}},
            "amount_received": amount_received,
            "canceled_at": canceled_at,
            "cancellation_reason": None,
            "capture_method": "manual",
            "client_secret": f"{id}_secret_{derived_id('cs', id).removeprefix('cs_')}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": currency,
            "last_payment_error": last_payment_error,
            "latest_charge": latest_charge,
            "livemode": False,
            "metadata": dict(metadata),
            "next_action": (
                {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": next_action_url, "return_url": None},
                }
                if next_action_url
                else None
            ),
            # A declined card is detached: the buyer must give another (requires_payment_method).
            "payment_method": (
                None if status == "requires_payment_method" else derived_id("pm", id)
            ),
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "status": status,
        },
    )


def card_error(
    *,
    code: str,
    decline_code: str | None,
    message: str,
    charge: str | None,
    payment_intent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stripe's error object of a refused card (a 402's `error`, an intent's last error)."""
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "doc_url": f"{DOC_URL}{code.replace('_', '-')}",
        "message": message,
    }
    if decline_code is not None:
        error["decline_code"] = decline_code
    if charge is not None:
        error["charge"] = charge
    if payment_intent is not None:
        error["payment_intent"] = payment_intent
    return error


def outcome(*, decline_code: str | None, blocked: bool) -> dict[str, Any]:
    """How the charge fared: authorized, declined by the issuer, or blocked by Radar."""
    body: dict[str, Any] = {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "risk_level": "normal",
        "risk_score": 20,
    }
    if blocked:
        body.update(
            network_status="not_sent_to_network",
            reason="highest_risk_level",
            risk_level="highest",
            risk_score=95,
            seller_message="Stripe blocked this payment as too risky.",
            type="blocked",
        )
    elif decline_code is not None:
        body.update(
            advice_code="do_not_try_again",
            network_status="declined_by_network",
            reason=decline_code,
            seller_message="The bank did not return any further details with this decline.",
            type="issuer_declined",
        )
    else:
        body.update(
            network_status="approved_by_network",
            reason=None,
            seller_message="Payment complete.",
            type="authorized",
        )
    return body


def charge(
    *,
    id: str,
    intent: dict[str, Any],
    amount_refunded: int,
    refunds: list[dict[str, Any]],
    disputed: bool,
    failure: dict[str, Any] | None,
    blocked: bool,
) -> dict[str, Any]:
    """The charge of an intent: its authorization (or its declined attempt) and refunds."""
    captured = intent["amount_received"]
    return _object(
        "charge",
        id,
        _NULL_CHARGE,
        {
            "amount": intent["amount"],
            "amount_captured": captured,
            "amount_refunded": amount_refunded,
            "billing_details": {
                "address": dict.fromkeys(
                    ("city", "country", "line1", "line2", "postal_code", "state")
                ),
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "SANDBOX",
            "captured": captured > 0,
            "created": intent["created"],
            "currency": intent["currency"],
            "disputed": disputed,
            "failure_code": failure["code"] if failure else None,
            "failure_message": failure["message"] if failure else None,
            "fraud_details": {"stripe_report": "fraudulent"} if blocked else {},
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "outcome": outcome(
                decline_code=failure.get("decline_code") if failure else None, blocked=blocked
            ),
            "paid": failure is None,
            "payment_intent": intent["id"],
            "payment_method": derived_id("pm", intent["id"]),
            "refunded": 0 < captured <= amount_refunded,
            "refunds": {
                "object": "list",
                "data": refunds,
                "has_more": False,
                "url": f"/v1/charges/{id}/refunds",
            },
            "status": "failed" if failure else "succeeded",
        },
    )


def refund(
    *,
    id: str,
    amount: int,
    currency: str,
    charge: str,
    payment_intent: str,
    status: str,
    reason: str | None,
    failure_reason: str | None,
    metadata: dict[str, str],
    created: int,
) -> dict[str, Any]:
    """A card refund: `pending` until the card network settles it, then succeeded or failed."""
    body = _object(
        "refund",
        id,
        _NULL_REFUND,
        {
            "amount": amount,
            "charge": charge,
            "created": created,
            "currency": currency,
            "destination_details": {
                "type": "card",
                "card": {"reference_status": "pending", "type": "refund"},
            },
            "metadata": dict(metadata),
            "payment_intent": payment_intent,
            "payment_method": derived_id("pm", payment_intent),
            "reason": reason,
            "status": status,
        },
    )
    if failure_reason is not None:
        body["failure_reason"] = failure_reason
    return body


def dispute(
    *,
    id: str,
    amount: int,
    currency: str,
    charge: str,
    payment_intent: str,
    status: str,
    reason: str,
    created: int,
    due_by: int,
    evidence: dict[str, str],
    submission_count: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A card dispute (chargeback): the merchant answers with evidence before `due_by`."""
    return {
        "id": id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge,
        "created": created,
        "currency": currency,
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(EVIDENCE_FIELDS), **evidence, "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": due_by,
            "enhanced_eligibility": {},
            "has_evidence": bool(evidence),
            "past_due": False,
            "submission_count": submission_count,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": dict(metadata),
        "payment_intent": payment_intent,
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": "visa",
                "case_type": "chargeback",
                "network": "visa",
                "network_reason_code": "10.4",
            },
        },
        "reason": reason,
        "status": status,
    }


def event(*, id: str, type: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
    """A webhook event carrying the object as it is after the change."""
    return {
        "id": id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }
