"""Money as `Decimal` plus an ISO 4217 currency, always quantized to the currency's minor unit.

Minor units come from CLDR (via Babel), which is what card networks and Stripe use in practice
(e.g. ISK and UGX have no minor unit). Integers of minor units exist only at the payment-provider
boundary: `to_minor_units` and `from_minor_units`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


# ISO 4217 codes that name no money anybody pays with: precious metals (XAU, XAG, XPD, XPT),
# the testing and "no currency" codes (XTS, XXX), units of account and bond-market units (XDR,
# XBA..XBD, XSU, XUA, and the withdrawn XEU, XFO, XFU, XRE, XAD CLDR still lists). A price, a cart
# or a coupon in one of them would reach the payment provider, which refuses it.
NOT_CURRENCIES = frozenset(
    {
        "XAG", "XAU", "XPD", "XPT",
        "XTS", "XXX",
        "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA",
        "XAD", "XEU", "XFO", "XFU", "XRE",
    }
)  # fmt: skip

# Read once, at import. Babel loads its CLDR data from files lazily; doing that here keeps file I/O
# out of workflow code, where Temporal's sandbox forbids it (and where it would not be replay-safe).
_EXPONENTS: dict[str, int] = {
    code: int(get_currency_precision(code))
    for code in list_currencies()
    if code not in NOT_CURRENCIES
}


def normalize_currency(code: str) -> str:
    """The upper-case ISO 4217 code of a currency, or MoneyError if the code is unknown or names
    something other than money to pay with (`NOT_CURRENCIES`)."""
    upper = code.strip().upper()
    if upper in NOT_CURRENCIES:
        raise MoneyError(f"{code!r} is not a currency one can pay with")
    if len(upper) != 3 or upper not in _EXPONENTS:
        raise MoneyError(f"unknown currency {code!r}")
    return upper


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point in `currency` (2 for USD, 0 for JPY, 3 for KWD)."""
    return _EXPONENTS[normalize_currency(currency)]


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def _to_decimal(value: Decimal | int | str) -> Decimal:
    if isinstance(value, float):
        raise MoneyError("money is never a float")
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise MoneyError(f"not an amount: {value!r}") from exc
    if not result.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return result


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An exact amount of one currency, quantized to that currency's minor unit."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        currency = normalize_currency(self.currency)
        amount = _to_decimal(self.amount)
        quantized = amount.quantize(_quantum(currency))
        if quantized != amount:
            raise MoneyError(
                f"{amount} has more precision than {currency} allows "
                f"({minor_unit_exponent(currency)} decimals)"
            )
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "amount", quantized)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Exact money; raises MoneyError if `amount` has more decimals than the currency."""
        return cls(_to_decimal(amount), currency)

    @classmethod
    def rounded(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Money rounded half-up to the currency's minor unit."""
        value = _to_decimal(amount).quantize(_quantum(currency), rounding=ROUND_HALF_UP)
        return cls(value, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Nothing, in `currency`."""
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor_units(cls, units: int, currency: str) -> Money:
        """Money from the provider's integer of minor units."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise MoneyError(f"minor units must be an integer, got {units!r}")
        return cls(Decimal(units).scaleb(-minor_unit_exponent(currency)), currency)

    def to_minor_units(self) -> int:
        """The integer of minor units the payment provider expects."""
        return int(self.amount.scaleb(minor_unit_exponent(self.currency)))

    def _same_currency(self, other: Money) -> None:
        if self.currency != other.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, quantity: int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise MoneyError("money is multiplied by whole quantities only")
        return Money(self.amount * quantity, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def percentage(self, percent: Decimal) -> Money:
        """`percent` % of this amount, rounded half-up to the minor unit."""
        return Money.rounded(self.amount * _to_decimal(percent) / Decimal(100), self.currency)

    def min(self, other: Money) -> Money:
        """The smaller of two amounts of the same currency."""
        return self if self <= other else other

    def is_zero(self) -> bool:
        """Whether the amount is exactly nothing."""
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def allocate(amount: Money, weights: Sequence[Money]) -> list[Money]:
    """`amount` split over `weights` pro rata, each share rounded half-up to the minor unit.

    What rounding leaves over (or takes too much) goes to the largest weight (the first of equal
    ones), so the shares always add up to `amount` exactly. All weights zero: everything on the
    first. Used to spread an order's discount over its lines, so a refund of some lines later
    gives back exactly the share they were given, whatever prices and coupons say by then.
    """
    if not weights:
        if amount.is_zero():
            return []
        raise MoneyError("cannot allocate money over no weights")
    for weight in weights:
        if weight.currency != amount.currency:
            raise MoneyError(f"cannot allocate {amount.currency} over {weight.currency}")
        if weight.amount < 0:
            raise MoneyError("allocation weights must not be negative")
    total = sum((w.amount for w in weights), Decimal(0))
    largest = max(range(len(weights)), key=lambda i: (weights[i].amount, -i))
    if total == 0:
        return [
            amount if i == largest else Money.zero(amount.currency) for i in range(len(weights))
        ]
    shares = [Money.rounded(amount.amount * w.amount / total, amount.currency) for w in weights]
    left = amount.amount - sum((s.amount for s in shares), Decimal(0))
    shares[largest] = Money(shares[largest].amount + left, amount.currency)
    return shares
