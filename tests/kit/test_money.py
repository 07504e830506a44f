"""Money is Decimal plus currency, quantized to the minor unit, never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.money import Money, MoneyError, minor_unit_exponent, normalize_currency


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
