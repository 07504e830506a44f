"""The smallest amount Stripe charges in each currency, checked before any call.

Stripe refuses a charge below its minimum (`amount_too_small`), set per presentment currency so
that the fees do not exceed the payment (Stripe's "minimum and maximum charge amounts"). The
platform refuses such a total itself, before a payment row, an idempotency key or an intent
exists: the checkout fails with `amount_below_minimum` and nothing is held or needs undoing.

A currency missing from the table is left to Stripe, whose minimum there is the equivalent of
USD 0.50 at the day's exchange rate: a refusal then comes back as a declined payment. A zero
total never reaches the provider at all (the checkout skips the payment).
"""

from __future__ import annotations

from decimal import Decimal

from domains.payments.errors import AmountBelowMinimum
from kit.money import Money

# In major units of each currency (ISO 4217), as Stripe publishes them.
STRIPE_MINIMUM_CHARGES: dict[str, Decimal] = {
    "USD": Decimal("0.50"),
    "AED": Decimal("2.00"),
    "AUD": Decimal("0.50"),
    "BGN": Decimal("1.00"),
    "BRL": Decimal("0.50"),
    "CAD": Decimal("0.50"),
    "CHF": Decimal("0.50"),
    "CZK": Decimal("15.00"),
    "DKK": Decimal("2.50"),
    "EUR": Decimal("0.50"),
    "GBP": Decimal("0.30"),
    "HKD": Decimal("4.00"),
    "HUF": Decimal("175.00"),
    "INR": Decimal("0.50"),
    "JPY": Decimal("50"),
    "MXN": Decimal("10"),
    "MYR": Decimal("2"),
    "NOK": Decimal("3.00"),
    "NZD": Decimal("0.50"),
    "PLN": Decimal("2.00"),
    "RON": Decimal("2.00"),
    "SEK": Decimal("3.00"),
    "SGD": Decimal("0.50"),
    "THB": Decimal("10"),
}


def minimum_charge(currency: str) -> Money | None:
    """Stripe's minimum charge in `currency`, or None when the table does not know it."""
    found = STRIPE_MINIMUM_CHARGES.get(currency.upper())
    return Money.of(found, currency) if found is not None else None


def check_minimum(amount: Money) -> None:
    """AmountBelowMinimum for a positive `amount` below the currency's minimum charge."""
    minimum = minimum_charge(amount.currency)
    if minimum is not None and Decimal(0) < amount.amount < minimum.amount:
        raise AmountBelowMinimum(
            f"{amount.currency} {amount.amount} is below the smallest amount the payment "
            f"provider charges ({minimum.currency} {minimum.amount})",
            amount=str(amount.amount),
            currency=amount.currency,
            minimum=str(minimum.amount),
        )
