"""Stripe Tax in the sandbox, through the official SDK: calculations by the rate table,
transactions from them (idempotent), reversals in full and in part, Stripe's refusals, and the
fault switch. Every object the sandbox sends is validated against Stripe's schemas for the
pinned SDK's API version (tests/sandbox/stripe_spec)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import stripe

from tests.sandbox.conftest import API_KEY, Psp, SandboxFactory
from tests.sandbox.stripe_spec import Conformance

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

TAX_KINDS = {
    "tax.calculation",
    "tax.calculation_line_item",
    "tax.transaction",
    "tax.transaction_line_item",
}
CA = {"country": "US", "state": "CA", "postal_code": "94080", "city": "South San Francisco"}


@pytest.fixture(scope="module")
def conformance() -> Conformance:
    """What the module validated; its last test reports it."""
    return Conformance()


@pytest.fixture(scope="module")
def tax_psp(start_sandbox: SandboxFactory) -> Psp:
    """A sandbox of its own: the fault switch must not disturb other modules."""
    return start_sandbox(webhook_url="", SANDBOX_TAX_HANG_S="2")


class Tax:
    """The SDK's tax services, every answer validated."""

    def __init__(self, client: stripe.StripeClient, checked: Conformance) -> None:
        self.calculations = client.v1.tax.calculations
        self.transactions = client.v1.tax.transactions
        self.checked = checked

    def raw(self, obj: stripe.StripeObject, kind: str) -> dict[str, Any]:
        """The JSON the sandbox sent, validated as `kind`."""
        assert obj.last_response is not None
        body: dict[str, Any] = json.loads(obj.last_response.body)
        self.checked.check(kind, body)
        return body

    async def calculate(
        self, amounts: list[int], address: dict[str, str], shipping: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A calculation of lines `L0..Ln` with their line items expanded."""
        params: dict[str, Any] = {
            "currency": "usd",
            "line_items": [
                {"amount": amount, "reference": f"L{i}", "quantity": 1, "tax_code": "txcd_99999999"}
                for i, amount in enumerate(amounts)
            ],
            "customer_details": {"address": address, "address_source": "shipping"},
            "expand": ["line_items"],
            **extra,
        }
        if shipping is not None:
            params["shipping_cost"] = {"amount": shipping}
        created = await self.calculations.create_async(
            cast(stripe.params.tax.CalculationCreateParams, params)
        )
        return self.raw(created, "tax.calculation")

    async def commit(self, calculation: str, reference: str, key: str | None = None) -> Any:
        """A transaction from the calculation."""
        options: stripe.RequestOptions = {"idempotency_key": key} if key else {}
        created = await self.transactions.create_from_calculation_async(
            {"calculation": calculation, "reference": reference}, options
        )
        return self.raw(created, "tax.transaction")

    async def reverse(self, **params: Any) -> dict[str, Any]:
        """A reversal."""
        created = await self.transactions.create_reversal_async(
            cast(stripe.params.tax.TransactionCreateReversalParams, params)
        )
        return self.raw(created, "tax.transaction")


@pytest.fixture
async def tax(tax_psp: Psp, conformance: Conformance) -> AsyncIterator[Tax]:
    """The async SDK against the tax sandbox, without retries."""
    http = stripe.HTTPXClient(timeout=10)
    client = stripe.StripeClient(
        api_key=API_KEY,
        base_addresses={"api": tax_psp.url},
        http_client=http,
        max_network_retries=0,
    )
    yield Tax(client, conformance)
    await http.close_async()  # type: ignore[no-untyped-call]


def _lines(body: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(li["reference"], li["amount"], li["amount_tax"]) for li in body["line_items"]["data"]]


async def test_california_taxes_lines_and_shipping_at_7_25_percent(tax: Tax) -> None:
    calc = await tax.calculate([1999, 500], CA, shipping=700)
    assert _lines(calc) == [("L0", 1999, 145), ("L1", 500, 36)]
    assert calc["shipping_cost"] == {
        "amount": 700,
        "amount_tax": 51,  # 50.75 rounds half-up
        "tax_behavior": "exclusive",
        "tax_code": "txcd_92010001",
    }
    assert (calc["tax_amount_exclusive"], calc["tax_amount_inclusive"]) == (232, 0)
    assert calc["amount_total"] == 1999 + 500 + 700 + 232
    assert calc["id"].startswith("taxcalc_")
    assert calc["expires_at"] - calc["tax_date"] == 90 * 24 * 3600
    [breakdown] = calc["tax_breakdown"]
    assert breakdown["tax_rate_details"]["percentage_decimal"] == "7.25"
    assert (breakdown["taxable_amount"], breakdown["amount"]) == (3199, 232)


async def test_germany_is_19_percent_vat_and_unlisted_places_collect_nothing(tax: Tax) -> None:
    de = await tax.calculate([1000], {"country": "DE", "postal_code": "10115"}, shipping=490)
    assert (_lines(de), de["shipping_cost"]["amount_tax"]) == ([("L0", 1000, 190)], 93)
    assert de["tax_breakdown"][0]["tax_rate_details"]["tax_type"] == "vat"
    for address in ({"country": "JP"}, {"country": "US", "state": "OR"}):
        none = await tax.calculate([1000, 2000], address, shipping=300)
        assert none["tax_amount_exclusive"] == 0
        assert [li[2] for li in _lines(none)] == [0, 0]
        assert none["tax_breakdown"][0]["taxability_reason"] == "not_collecting"


async def test_each_line_is_rounded_on_its_own_half_up(tax: Tax, tax_psp: Psp) -> None:
    """25 lines of 7 cents in New York (4 %): 0.28 each rounds to 0, 25 lines of 13 cents
    (0.52) to 1: per line, not on the sum. The list pages by ten, as Stripe's do."""
    calc = await tax.calculate([7] * 25 + [13] * 25, {"country": "US", "state": "NY"})
    assert calc["tax_amount_exclusive"] == 25
    assert calc["line_items"]["has_more"] is True
    assert len(calc["line_items"]["data"]) == 10
    pages = tax.calculations.line_items
    first = await pages.list_async(calc["id"], {"limit": 30})
    rest = await pages.list_async(calc["id"], {"limit": 30, "starting_after": first.data[-1].id})
    items = [*first.data, *rest.data]
    assert [item.amount_tax for item in items] == [0] * 25 + [1] * 25
    assert rest.has_more is False
    async with httpx.AsyncClient(base_url=tax_psp.url, trust_env=False) as http:
        page = await http.get(
            f"/v1/tax/calculations/{calc['id']}/line_items",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    for item in page.json()["data"]:
        tax.checked.check("tax.calculation_line_item", item)


async def test_a_transaction_from_a_calculation_is_idempotent_and_references_are_unique(
    tax: Tax,
) -> None:
    calc = await tax.calculate([1999], CA, shipping=700)
    reference, key = f"co_{uuid.uuid4()}", uuid.uuid4().hex
    first = await tax.commit(calc["id"], reference, key)
    again = await tax.commit(calc["id"], reference, key)
    assert again["id"] == first["id"]
    assert first["id"].startswith("tax_")
    assert (first["type"], first["reference"], first["reversal"]) == (
        "transaction",
        reference,
        None,
    )
    assert [
        (li["reference"], li["amount_tax"], li["type"]) for li in first["line_items"]["data"]
    ] == [("L0", 145, "transaction")]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await tax.commit(calc["id"], reference)
    assert refused.value.param == "reference"
    tax.checked.error(refused.value.json_body)


async def test_full_reversal_takes_back_everything_once(tax: Tax) -> None:
    calc = await tax.calculate([1999, 500], CA, shipping=700)
    original = await tax.commit(calc["id"], f"co_{uuid.uuid4()}")
    full = await tax.reverse(
        original_transaction=original["id"], reference=f"{original['reference']}:full", mode="full"
    )
    assert (full["type"], full["reversal"]) == (
        "reversal",
        {"original_transaction": original["id"]},
    )
    assert _lines(full) == [("L0", -1999, -145), ("L1", -500, -36)]
    assert (full["shipping_cost"]["amount"], full["shipping_cost"]["amount_tax"]) == (-700, -51)
    ids = [li["id"] for li in original["line_items"]["data"]]
    assert [li["reversal"]["original_line_item"] for li in full["line_items"]["data"]] == ids
    with pytest.raises(stripe.InvalidRequestError):
        await tax.reverse(
            original_transaction=original["id"], reference=f"{original['reference']}:2", mode="full"
        )


async def test_partial_reversals_never_take_back_more_than_remains(tax: Tax) -> None:
    calc = await tax.calculate([1999, 500], CA, shipping=700)
    original = await tax.commit(calc["id"], f"co_{uuid.uuid4()}")
    first_line = original["line_items"]["data"][0]["id"]
    part = await tax.reverse(
        original_transaction=original["id"],
        reference=f"{original['reference']}:return-1",
        mode="partial",
        line_items=[
            {
                "original_line_item": first_line,
                "reference": "L0",
                "amount": -1000,
                "amount_tax": -72,
            }
        ],
        shipping_cost={"amount": -700, "amount_tax": -51},
    )
    assert _lines(part) == [("L0", -1000, -72)]
    assert part["shipping_cost"]["amount_tax"] == -51
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await tax.reverse(
            original_transaction=original["id"],
            reference=f"{original['reference']}:return-2",
            mode="partial",
            line_items=[
                {
                    "original_line_item": first_line,
                    "reference": "L0",
                    "amount": -1000,
                    "amount_tax": -73,
                }
            ],
        )
    assert refused.value.param == "line_items[0][amount]"
    assert "exceeds what remains" in str(refused.value.user_message)
    tax.checked.error(refused.value.json_body)
    rest = await tax.reverse(
        original_transaction=original["id"],
        reference=f"{original['reference']}:return-3",
        mode="partial",
        line_items=[
            {"original_line_item": first_line, "reference": "L0", "amount": -999, "amount_tax": -73}
        ],
    )
    assert _lines(rest) == [("L0", -999, -73)]


async def test_unknown_objects_and_bad_parameters_are_stripe_errors(tax: Tax) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await tax.commit("taxcalc_nope", f"co_{uuid.uuid4()}")
    assert (missing.value.code, missing.value.param) == ("resource_missing", "calculation")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await tax.calculate([100], CA, tax_behaviour="exclusive")
    assert unknown.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as no_details:
        await tax.calculations.create_async(
            cast(
                stripe.params.tax.CalculationCreateParams,
                {"currency": "usd", "line_items": [{"amount": 1}]},
            )
        )
    assert (no_details.value.code, no_details.value.param) == (
        "parameter_missing",
        "customer_details",
    )
    for refused in (missing, unknown, no_details):
        tax.checked.error(refused.value.json_body)


async def test_the_fault_switch_makes_tax_fail_then_hang_then_work(tax: Tax, tax_psp: Psp) -> None:
    async with httpx.AsyncClient(base_url=tax_psp.url, trust_env=False) as http:
        assert (await http.post("/v1/test_helpers/tax/fault", json={"mode": "error"})).json() == {
            "mode": "error"
        }
        try:
            with pytest.raises(stripe.APIError) as down:
                await tax.calculate([100], CA)
            assert down.value.http_status == 500
            await http.post("/v1/test_helpers/tax/fault", json={"mode": "hang"})
            quick = stripe.StripeClient(
                api_key=API_KEY,
                base_addresses={"api": tax_psp.url},
                http_client=stripe.HTTPXClient(timeout=0.5),
                max_network_retries=0,
            )
            with pytest.raises(stripe.APIConnectionError):
                await quick.v1.tax.calculations.create_async(
                    cast(
                        stripe.params.tax.CalculationCreateParams,
                        {
                            "currency": "usd",
                            "line_items": [{"amount": 100}],
                            "customer_details": {"address": CA, "address_source": "shipping"},
                        },
                    )
                )
        finally:
            await http.post("/v1/test_helpers/tax/fault", json={"mode": "none"})
    assert (await tax.calculate([100], CA))["tax_amount_exclusive"] == 7


def test_every_tax_object_was_validated(conformance: Conformance) -> None:
    """The must-show: every kind of tax object the sandbox sends was validated (run the whole
    module)."""
    if not conformance.kinds:
        pytest.skip("the scenarios of this module did not run")
    print(f"\ntax conformance: {dict(conformance.kinds)}")
    assert TAX_KINDS <= set(conformance.kinds)
