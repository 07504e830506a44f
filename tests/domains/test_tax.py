"""Tax without a tax service: the share of tax a partial refund takes back, the plan of a
reversal against what remains, `TAX_PROVIDER=none`, the settings and the activity payloads.
(The Stripe Tax provider and the activities against the sandbox: tests/sandbox/test_tax_*.py.)"""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from activities.payments.contract import ReverseTaxInput, TaxAddressValue
from domains.payments.errors import TaxReversalTooLarge
from domains.payments.models import TaxRecord, TaxReversal
from domains.payments.tax import (
    TaxableLine,
    TaxStatus,
    share_of_tax,
    untaxed,
)
from domains.payments.tax_records import plan_partial
from kit.money import Money
from kit.settings import Settings, TaxSettings


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def _record() -> TaxRecord:
    """A committed checkout: two lines and shipping taxed at 19 %."""
    return TaxRecord(
        checkout_id=uuid.uuid4(),
        provider="stripe",
        status=TaxStatus.COMMITTED,
        currency="EUR",
        calculation_id="taxcalc_1",
        transaction_id="tax_1",
        tax_amount=eur("3.94").amount,
        shipping_amount=eur("4.90").amount,
        shipping_tax=eur("0.93").amount,
        reversed_tax=eur("0").amount,
        lines={
            "A": {
                "amount": "10.00",
                "tax": "1.90",
                "item_id": "tax_li_a",
                "reversed_amount": "4.00",
                "reversed_tax": "0.76",
            },
            "B": {
                "amount": "5.90",
                "tax": "1.12",
                "item_id": "tax_li_b",
                "reversed_amount": "0",
                "reversed_tax": "0",
            },
        },
    )


def test_a_share_of_tax_is_proportional_and_a_whole_line_takes_all_of_it() -> None:
    assert share_of_tax(eur("1.12"), eur("2.95"), eur("5.90")) == eur("0.56")
    assert share_of_tax(eur("0.73"), eur("5.00"), eur("10.00")) == eur("0.37")  # half-up
    assert share_of_tax(eur("1.12"), eur("5.90"), eur("5.90")) == eur("1.12")
    assert share_of_tax(eur("0"), eur("1.00"), eur("0")) == eur("0")


def test_a_partial_reversal_takes_its_share_of_what_remains() -> None:
    lines, shipping = plan_partial(_record(), {"A": eur("6.00")}, eur("4.90"), [])
    # A: 6.00 remains of 10.00, 1.14 of its tax: all of it.
    assert [(line.item_id, line.amount, line.tax) for line in lines] == [
        ("tax_li_a", eur("6.00"), eur("1.14"))
    ]
    assert shipping == (eur("4.90"), eur("0.93"))


def test_everything_that_remains_is_every_line_and_the_shipping_left() -> None:
    earlier = TaxReversal(lines={"shipping": {"amount": "4.90", "tax": "0.93"}})
    lines, shipping = plan_partial(_record(), None, None, [earlier])
    assert [(line.reference, line.amount, line.tax) for line in lines] == [
        ("A", eur("6.00"), eur("1.14")),
        ("B", eur("5.90"), eur("1.12")),
    ]
    assert shipping is None  # already taken back


@pytest.mark.parametrize(
    ("amounts", "shipping"),
    [({"A": eur("6.01")}, None), ({"C": eur("1.00")}, None), ({}, eur("4.91"))],
)
def test_more_than_remains_is_refused_before_anything_is_sent(
    amounts: dict[str, Money], shipping: Money | None
) -> None:
    with pytest.raises(TaxReversalTooLarge) as refused:
        plan_partial(_record(), amounts, shipping, [])
    assert refused.value.code == "tax_reversal_too_large"


def test_no_tax_charges_nothing_and_records_nothing() -> None:
    lines = [TaxableLine("A", eur("10.00"), 1)]
    result = untaxed("EUR", lines, eur("4.90"))
    assert (result.id, result.total_tax, result.shipping) == (None, eur("0"), eur("4.90"))
    assert [(line.reference, line.amount, line.tax) for line in result.lines] == [
        ("A", eur("10.00"), eur("0"))
    ]


def test_tax_settings_default_to_none_and_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TaxSettings() == TaxSettings(
        provider="none", on_failure="fail", default_code="txcd_99999999", max_attempts=3
    )
    monkeypatch.setenv("TAX_PROVIDER", "stripe")
    monkeypatch.setenv("TAX_ON_FAILURE", "open")
    assert (Settings().tax.provider, Settings().tax.on_failure) == ("stripe", "open")
    monkeypatch.setenv("TAX_ON_FAILURE", "maybe")
    with pytest.raises(ValidationError):
        Settings()


def test_payloads_refuse_what_the_tax_service_would() -> None:
    with pytest.raises(ValidationError):
        TaxAddressValue(country="usa")
    with pytest.raises(ValidationError):
        ReverseTaxInput(checkout_id=uuid.uuid4(), reversal_key="a key with spaces")
