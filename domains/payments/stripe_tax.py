"""Stripe Tax through the official `stripe` package (async `StripeClient` on HTTPX).

`POST /v1/tax/calculations` (line items, shipping cost, the shipping address),
`POST /v1/tax/transactions/create_from_calculation` and
`POST /v1/tax/transactions/create_reversal`; line items are read page by page when a list says
it has more. Like the payment provider (domains/payments/stripe_provider.py), retries are
Temporal's (`max_network_retries=0`), every POST carries an idempotency key derived from the
checkout, and Stripe's errors become `ProviderRejected`, `ProviderUnavailable` or
`ProviderMisuse`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import stripe

from domains.payments.stripe_provider import stripe_client, translated
from domains.payments.tax import LineTax, ReversalLine, TaxableLine, TaxAddress, TaxResult
from kit.money import Money

# Stripe's tax code of shipping.
SHIPPING_TAX_CODE = "txcd_92010001"
PAGE = 100
# What a restricted key needs for tax, besides the payments' RESTRICTED_KEY_PERMISSIONS
# (stripe_provider.py), with the calls needing it.
TAX_RESTRICTED_KEY_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "tax_calculations_and_transactions_write": (
        "POST /v1/tax/calculations",
        "GET /v1/tax/calculations/:id/line_items",
        "POST /v1/tax/transactions/create_from_calculation",
        "POST /v1/tax/transactions/create_reversal",
        "GET /v1/tax/transactions/:id/line_items",
    ),
}


def _money(units: int, currency: str) -> Money:
    return Money.from_minor_units(int(units), currency)


class StripeTaxProvider:
    """Stripe Tax (or the sandbox); owns its HTTPX connection pool."""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str, timeout_s: float, tax_code: str) -> None:
        self._tax_code = tax_code
        client, self._http = stripe_client(api_key, api_base, timeout_s)
        self._calculations = client.v1.tax.calculations
        self._transactions = client.v1.tax.transactions

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def calculate(
        self,
        currency: str,
        lines: Sequence[TaxableLine],
        shipping: Money,
        address: TaxAddress,
        *,
        key: str,
    ) -> TaxResult:
        """The tax of each line (by reference) and of the shipping, for the shipping address."""
        given = {
            "country": address.country,
            "state": address.state,
            "postal_code": address.postal_code,
            "city": address.city,
            "line1": address.line1,
        }
        params = cast(
            stripe.params.tax.CalculationCreateParams,
            {
                "currency": currency.lower(),
                "line_items": [
                    {
                        "amount": line.amount.to_minor_units(),
                        "reference": line.reference,
                        "quantity": line.quantity,
                        "tax_behavior": "exclusive",
                        "tax_code": self._tax_code,
                    }
                    for line in lines
                ],
                "customer_details": {
                    "address": {k: v for k, v in given.items() if v},
                    "address_source": "shipping",
                },
                "shipping_cost": {
                    "amount": shipping.to_minor_units(),
                    "tax_behavior": "exclusive",
                    "tax_code": SHIPPING_TAX_CODE,
                },
                "expand": ["line_items"],
            },
        )
        calc = await translated(
            "tax.calculate", self._calculations.create_async(params, {"idempotency_key": key})
        )
        data = calc.to_dict()
        items = await self._all_lines("calculations", str(data["id"]), data.get("line_items"))
        return _result(data, items)

    async def commit(self, calculation_id: str, *, reference: str, key: str) -> TaxResult:
        """Record the calculation as a transaction (its lines get the ids reversals name)."""
        params: stripe.params.tax.TransactionCreateFromCalculationParams = {
            "calculation": calculation_id,
            "reference": reference,
        }
        created = await translated(
            "tax.commit",
            self._transactions.create_from_calculation_async(params, {"idempotency_key": key}),
        )
        data = created.to_dict()
        items = await self._all_lines("transactions", str(data["id"]), data.get("line_items"))
        return _result(data, items)

    async def reverse(
        self,
        transaction_id: str,
        *,
        reference: str,
        key: str,
        lines: Sequence[ReversalLine] | None,
        shipping: tuple[Money, Money] | None = None,
    ) -> TaxResult:
        """A reversal: in full (`lines=None`) or of these amounts, sent negative as Stripe
        takes them; the result reports what was taken back as positive money."""
        params = cast(
            stripe.params.tax.TransactionCreateReversalParams,
            {"original_transaction": transaction_id, "reference": reference, "mode": "full"},
        )
        if lines is not None:
            params["mode"] = "partial"
            params["line_items"] = [
                {
                    "original_line_item": line.item_id,
                    "reference": line.reference,
                    "amount": -line.amount.to_minor_units(),
                    "amount_tax": -line.tax.to_minor_units(),
                }
                for line in lines
            ]
            if shipping is not None:
                amount, tax = shipping
                params["shipping_cost"] = {
                    "amount": -amount.to_minor_units(),
                    "amount_tax": -tax.to_minor_units(),
                }
        created = await translated(
            "tax.reverse",
            self._transactions.create_reversal_async(params, {"idempotency_key": key}),
        )
        data = created.to_dict()
        items = await self._all_lines("transactions", str(data["id"]), data.get("line_items"))
        return _negated(_result(data, items))

    async def _all_lines(self, kind: str, object_id: str, first: Any) -> list[dict[str, Any]]:
        """Every line item: the embedded list, then the next pages while it says it has more."""
        items: list[dict[str, Any]] = list(first["data"]) if first else []
        more = bool(first["has_more"]) if first else True
        while more:
            params: dict[str, Any] = {"limit": PAGE}
            if items:
                params["starting_after"] = items[-1]["id"]
            operation = f"tax.{kind}.line_items"
            if kind == "calculations":
                listed = self._calculations.line_items.list_async(object_id, cast(Any, params))
                body = (await translated(operation, listed)).to_dict()
            else:
                more_items = self._transactions.line_items.list_async(object_id, cast(Any, params))
                body = (await translated(operation, more_items)).to_dict()
            items.extend(body["data"])
            more = bool(body["has_more"])
        return items


def _result(data: dict[str, Any], items: list[dict[str, Any]]) -> TaxResult:
    currency = str(data["currency"]).upper()
    shipping = data.get("shipping_cost") or {"amount": 0, "amount_tax": 0}
    return TaxResult(
        id=str(data["id"]),
        currency=currency,
        lines=tuple(
            LineTax(
                reference=str(item["reference"]),
                amount=_money(item["amount"], currency),
                tax=_money(item["amount_tax"], currency),
                # A reversal's line names the transaction line it takes back.
                item_id=str((item.get("reversal") or {}).get("original_line_item") or item["id"]),
            )
            for item in items
        ),
        shipping=_money(shipping["amount"], currency),
        shipping_tax=_money(shipping["amount_tax"], currency),
    )


def _negated(result: TaxResult) -> TaxResult:
    zero = Money.zero(result.currency)
    return TaxResult(
        id=result.id,
        currency=result.currency,
        lines=tuple(
            LineTax(line.reference, zero - line.amount, zero - line.tax, line.item_id)
            for line in result.lines
        ),
        shipping=zero - result.shipping,
        shipping_tax=zero - result.shipping_tax,
    )
