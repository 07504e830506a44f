"""Money is Decimal plus currency, quantized to the minor unit, never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.money import Money, MoneyError, allocate, minor_unit_exponent, normalize_currency


def test_minor_units_follow_the_currency() -> None:
    assert minor_unit_exponent("USD") == 2
    assert minor_unit_exponent("JPY") == 0
    assert minor_unit_exponent("KWD") == 3


@pytest.mark.parametrize(
    "code", ["XXX", "xau", "XAG", "XPD", "XPT", "XTS", "XDR", "XBA", "XBD", "XSU", "XUA"]
)
def test_codes_that_name_no_money_to_pay_with_are_refused(code: str) -> None:
    with pytest.raises(MoneyError, match="not a currency"):
        normalize_currency(code)
    with pytest.raises(MoneyError):
        Money.of("1", code)


def test_currencies_that_share_the_x_prefix_are_money() -> None:
    # CFA francs, the East Caribbean dollar and the CFP franc are paid with every day.
    assert [normalize_currency(c) for c in ("XOF", "XAF", "XCD", "XPF")] == [
        "XOF",
        "XAF",
        "XCD",
        "XPF",
    ]


def test_exact_amounts_keep_their_value_and_gain_the_currency_scale() -> None:
    assert Money.of("10", "usd") == Money(Decimal("10.00"), "USD")
    assert str(Money.of("10", "USD").amount) == "10.00"
    assert Money.of("1.234", "KWD").to_minor_units() == 1234


def test_more_precision_than_the_currency_allows_is_refused() -> None:
    with pytest.raises(MoneyError):
        Money.of("10.001", "USD")
    with pytest.raises(MoneyError):
        Money.of("1.5", "JPY")


def test_floats_and_garbage_are_refused() -> None:
    with pytest.raises(MoneyError):
        Money.of(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money.of("NaN", "USD")
    with pytest.raises(MoneyError):
        Money.of("ten", "USD")
    with pytest.raises(MoneyError):
        normalize_currency("XYZ")


def test_rounding_is_half_up() -> None:
    assert Money.rounded("0.125", "USD").amount == Decimal("0.13")
    assert Money.rounded("0.135", "USD").amount == Decimal("0.14")
    assert Money.rounded("2.5", "JPY").amount == Decimal("3")
    assert Money.of("19.99", "USD").percentage(Decimal("15")) == Money.of("3.00", "USD")  # 2.9985


def test_arithmetic_refuses_mixed_currencies() -> None:
    with pytest.raises(MoneyError):
        _ = Money.of(1, "USD") + Money.of(1, "EUR")
    with pytest.raises(MoneyError):
        _ = Money.of(1, "USD") < Money.of(1, "EUR")


def test_arithmetic() -> None:
    price = Money.of("19.99", "EUR")
    assert price * 3 == Money.of("59.97", "EUR")
    assert 3 * price == price * 3
    assert price - Money.of("20", "EUR") == Money.of("-0.01", "EUR")
    assert Money.of(5, "EUR").min(Money.of(3, "EUR")) == Money.of(3, "EUR")
    with pytest.raises(MoneyError):
        _ = price * 1.5  # type: ignore[operator]


@given(
    units=st.integers(min_value=0, max_value=10**15),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_minor_units_round_trip(units: int, currency: str) -> None:
    assert Money.from_minor_units(units, currency).to_minor_units() == units


# -- allocation ------------------------------------------------------------------------------------


def _eur(value: str) -> Money:
    return Money.of(value, "EUR")


def test_an_allocation_gives_the_rounding_remainder_to_the_largest_line() -> None:
    shares = allocate(_eur("10.00"), [_eur("20.00"), _eur("50.00"), _eur("30.00")])
    assert shares == [_eur("2.00"), _eur("5.00"), _eur("3.00")]
    # 1/3 each rounds to 3.33: the cent left over goes to the largest (the first of equals).
    assert allocate(_eur("10.00"), [_eur("1.00")] * 3) == [_eur("3.34"), _eur("3.33"), _eur("3.33")]


def test_an_allocation_refuses_what_it_cannot_split() -> None:
    with pytest.raises(MoneyError):
        allocate(_eur("1.00"), [])
    with pytest.raises(MoneyError):
        allocate(_eur("1.00"), [Money.of("1.00", "USD")])
    assert allocate(_eur("0.00"), []) == []


@given(
    amount=st.integers(min_value=0, max_value=10**7),
    weights=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=12),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_shares_add_up_and_each_stays_within_its_line(
    amount: int, weights: list[int], currency: str
) -> None:
    whole = sum(weights)
    amount = min(amount, whole)  # a discount never exceeds the subtotal
    money = Money.from_minor_units(amount, currency)
    lines = [Money.from_minor_units(w, currency) for w in weights]
    shares = allocate(money, lines)
    assert sum((s.amount for s in shares), Decimal(0)) == money.amount
    for share, line in zip(shares, lines, strict=True):
        assert 0 <= share.amount <= line.amount or whole == 0
        if whole:
            # Pro rata, off by at most what rounding of every line can add up to.
            exact = money.amount * line.amount / Money.from_minor_units(whole, currency).amount
            unit = Money.from_minor_units(1, currency).amount
            assert abs(share.amount - exact) <= unit * len(lines)
