"""What a buyer is told about a refused card, and what only operators see.

The issuer's decline code is recorded on the payment (`payments.last_error_code`) for operators,
whatever it is. The buyer sees a sentence, and a code, that never says the card was reported lost
or stolen or that the payment looked fraudulent: telling a fraudster which check caught them
helps the next attempt, and Stripe asks integrations to show those declines as generic ones.
"""

from __future__ import annotations

# Declines that say something about fraud or about the card's owner: shown as a generic decline.
FRAUD_DECLINE_CODES = frozenset(
    {
        "fraudulent",
        "lost_card",
        "stolen_card",
        "pickup_card",
        "restricted_card",
        "merchant_blacklist",
        "security_violation",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "stop_payment_order",
    }
)
GENERIC_DECLINE = "generic_decline"
GENERIC_MESSAGE = "Your card was declined."
# What a buyer can act on: fix the card details, use another card, or try again later.
MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "incorrect_number": "Your card number is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "card_velocity_exceeded": "Your card has exceeded its limit. Try another card.",
    "authentication_required": "Your bank asks you to authenticate this payment. Try again.",
    "payment_intent_authentication_failure": "The authentication of your card failed.",
}


def buyer_code(code: str | None) -> str | None:
    """The decline code a buyer may see: a fraud-related one is a generic decline."""
    if code is None:
        return None
    return GENERIC_DECLINE if code in FRAUD_DECLINE_CODES else code


def buyer_message(code: str | None) -> str:
    """The sentence a buyer is shown for a refused card (generic unless it helps them act)."""
    visible = buyer_code(code)
    return MESSAGES.get(visible or "", GENERIC_MESSAGE)


# A new payment method the provider does not know (after a decline): the buyer may try another.
UNUSABLE_METHOD = "payment_method_unusable"
UNUSABLE_METHOD_MESSAGE = "This payment method cannot be used. Try another one."

# Failures that are no decline by the card's issuer: the buyer is shown the code itself.
NOT_ISSUER_DECLINES = frozenset({"payment_intent_authentication_failure"})
CARD_DECLINED = "card_declined"


def buyer_error_type(code: str | None) -> str | None:
    """The kind of failure a buyer is shown: `card_declined` unless the card's issuer never
    decided (a failed 3-D Secure challenge keeps its own code)."""
    if code is None:
        return None
    return code if code in NOT_ISSUER_DECLINES else CARD_DECLINED
