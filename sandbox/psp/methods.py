"""The test payment methods the sandbox knows: Stripe's own (`pm_card_*`, `tok_*`) and the
sandbox's (`pm_sandbox_*`, for the failures Stripe cannot be made to produce on demand).

Each name has a behaviour, stored with the intent as a `tok_*` name; every later step (capture,
3-D Secure, refunds, disputes, tok_flaky's call counters) reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

TOK_VISA = "tok_visa"
TOK_3DS = "tok_3ds"
TOK_3DS_FAIL = "tok_3ds_fail"
TOK_ASYNC = "tok_async"
TOK_NO_WEBHOOK = "tok_no_webhook"
TOK_FLAKY = "tok_flaky"
TOK_CAPTURE_FAILS = "tok_capture_fails"
TOK_REFUND_FAIL = "tok_refundFail"
TOK_CREATE_DISPUTE = "tok_createDispute"


@dataclass(frozen=True)
class Decline:
    """How a card is refused at authorization: Stripe's error code, the decline code, the
    message Stripe words for it, and whether Radar blocked it before the issuer saw it."""

    code: str
    decline_code: str
    message: str
    blocked: bool = False


GENERIC = "Your card was declined."
DECLINES: dict[str, Decline] = {
    "tok_declined": Decline("card_declined", "generic_decline", GENERIC),
    "tok_insufficient_funds": Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "tok_chargeDeclinedLostCard": Decline("card_declined", "lost_card", GENERIC),
    "tok_chargeDeclinedStolenCard": Decline("card_declined", "stolen_card", GENERIC),
    "tok_chargeDeclinedFraudulent": Decline("card_declined", "fraudulent", GENERIC),
    "tok_chargeDeclinedExpiredCard": Decline(
        "expired_card", "expired_card", "Your card has expired."
    ),
    "tok_chargeDeclinedIncorrectCvc": Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
    ),
    "tok_chargeDeclinedProcessingError": Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    # Radar's rules refuse it before the issuer sees it (outcome `blocked`).
    "tok_radarBlock": Decline("card_declined", "fraudulent", GENERIC, blocked=True),
}
# What a failed 3-D Secure challenge leaves on the intent (an invalid_request_error at Stripe).
AUTHENTICATION_FAILED = "authentication_failed"
AUTHENTICATION_FAILURE_CODE = "payment_intent_authentication_failure"
# Decline keys of files written before the catalogue was keyed by token.
LEGACY_DECLINES = {
    "card_declined": DECLINES["tok_declined"],
    "insufficient_funds": DECLINES["tok_insufficient_funds"],
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
        TOK_REFUND_FAIL,
        TOK_CREATE_DISPUTE,
        *DECLINES,
    }
)
# Tokens that stop at requires_action until somebody visits next_action.url.
THREE_DS_TOKENS = frozenset({TOK_3DS, TOK_3DS_FAIL, TOK_NO_WEBHOOK})
# Stripe's test payment methods, each the behaviour of a tok_* name.
PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": TOK_VISA,
    "pm_card_chargeDeclined": "tok_declined",
    "pm_card_chargeDeclinedInsufficientFunds": "tok_insufficient_funds",
    "pm_card_chargeDeclinedLostCard": "tok_chargeDeclinedLostCard",
    "pm_card_chargeDeclinedStolenCard": "tok_chargeDeclinedStolenCard",
    "pm_card_chargeDeclinedFraudulent": "tok_chargeDeclinedFraudulent",
    "pm_card_chargeDeclinedExpiredCard": "tok_chargeDeclinedExpiredCard",
    "pm_card_chargeDeclinedIncorrectCvc": "tok_chargeDeclinedIncorrectCvc",
    "pm_card_chargeDeclinedProcessingError": "tok_chargeDeclinedProcessingError",
    "pm_card_radarBlock": "tok_radarBlock",
    "pm_card_threeDSecure2Required": TOK_3DS,
    # Stripe's card that asks for authentication on every payment: a 3-D Secure challenge.
    "pm_card_authenticationRequired": TOK_3DS,
    "tok_authenticationRequired": TOK_3DS,
    "pm_card_refundFail": TOK_REFUND_FAIL,
    "pm_card_createDispute": TOK_CREATE_DISPUTE,
    "pm_sandbox_3ds_fail": TOK_3DS_FAIL,
    "pm_sandbox_async": TOK_ASYNC,
    "pm_sandbox_no_webhook": TOK_NO_WEBHOOK,
    "pm_sandbox_flaky": TOK_FLAKY,
    "pm_sandbox_capture_fails": TOK_CAPTURE_FAILS,
}


def behaviour_of(name: str) -> str:
    """The tok_* name whose behaviour a token or payment method has (unknown names unchanged)."""
    return PAYMENT_METHODS.get(name, name)


def decline_of(stored: str | None) -> Decline | None:
    """The card decline an intent's stored error is, None for none (or a 3DS failure)."""
    if stored is None:
        return None
    return DECLINES.get(stored) or LEGACY_DECLINES.get(stored)
