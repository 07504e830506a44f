"""Stripe Tax in the sandbox: calculations, transactions made from them, and their reversals.

Tax comes from a rate table by the customer's country and, in the United States, state
(`RATES`): a rate stands for "registered there"; anywhere else the sandbox collects nothing
(`not_collecting`, 0 %). Each line's tax is its amount times the rate, rounded half-up to the
minor unit, line by line as Stripe rounds; shipping is taxed like the goods (`txcd_92010001`).
Tax-inclusive amounts carry `amount - round(amount / (1 + rate))`.

A calculation expires after 90 days, as at Stripe. A transaction is recorded from a live
calculation under a reference unique across all transactions; a reversal takes back all of a
transaction (`mode=full`, only while nothing of it was reversed) or some amounts of its lines
and shipping (`mode=partial`, never more than remains of each).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.psp.errors import invalid_value, resource_missing
from sandbox.psp.models import Outcome, new_id
from sandbox.psp.tax_models import (
    DEFAULT_TAX_CODE,
    SHIPPING_TAX_CODE,
    CalculationRequest,
    FromCalculationRequest,
)

# (country, state or None for the whole country) -> percent. US states not listed: 0 %.
RATES: dict[tuple[str, str | None], Decimal] = {
    ("US", "CA"): Decimal("7.25"),
    ("US", "NY"): Decimal("4"),
    ("US", "TX"): Decimal("6.25"),
    ("DE", None): Decimal("19"),
    ("FR", None): Decimal("20"),
    ("GB", None): Decimal("20"),
}
CALCULATION_TTL_S = 90 * 24 * 3600
# What a list holds before `has_more` (Stripe's default page size).
PAGE = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS tax_calculations (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    line_items TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created INTEGER NOT NULL
);

-- A transaction or a reversal (which names its original); its line items as JSON.
CREATE TABLE IF NOT EXISTS tax_transactions (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL CHECK (type IN ('transaction', 'reversal')),
    original_transaction TEXT REFERENCES tax_transactions (id),
    body TEXT NOT NULL,
    line_items TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tax_transactions_original
    ON tax_transactions (original_transaction) WHERE original_transaction IS NOT NULL;
"""


def rate_of(country: str, state: str | None) -> Decimal | None:
    """The percent collected for an address, None where the sandbox is not registered."""
    country = country.upper()
    if (country, None) in RATES:
        return RATES[(country, None)]
    return RATES.get((country, (state or "").upper()))


def tax_on(amount: int, rate: Decimal, behavior: str) -> int:
    """The tax of one amount of minor units, rounded half-up per line as Stripe does."""
    if behavior == "inclusive":
        net = (Decimal(amount) * 100 / (100 + rate)).quantize(Decimal(1), ROUND_HALF_UP)
        return amount - int(net)
    return int((Decimal(amount) * rate / 100).quantize(Decimal(1), ROUND_HALF_UP))


def _percent(rate: Decimal) -> str:
    text = format(rate.normalize(), "f")
    return text if "." in text else f"{text}.0"


def _breakdown(
    address: dict[str, Any], rate: Decimal | None, taxable: int, tax: int, inclusive: bool
) -> dict[str, Any]:
    vat = address["country"] != "US"
    return {
        "amount": tax,
        "inclusive": inclusive,
        "tax_rate_details": {
            "country": address["country"],
            "flat_amount": None,
            "percentage_decimal": _percent(rate or Decimal(0)),
            "rate_type": "percentage",
            "state": None if vat else address.get("state"),
            "tax_type": None if rate is None else ("vat" if vat else "sales_tax"),
        },
        "taxability_reason": "not_collecting" if rate is None else "standard_rated",
        "taxable_amount": taxable,
    }


def _address(req: CalculationRequest) -> dict[str, Any]:
    given = req.customer_details.address
    return {
        "city": given.city,
        "country": given.country,
        "line1": given.line1,
        "line2": given.line2,
        "postal_code": given.postal_code,
        "state": given.state.upper() if given.state else given.state,
    }


def _calculation_lines(req: CalculationRequest, rate: Decimal | None) -> list[dict[str, Any]]:
    exempt = req.customer_details.taxability_override != "none"
    return [
        {
            "id": new_id("tax_li"),
            "object": "tax.calculation_line_item",
            "amount": line.amount,
            "amount_tax": (
                0 if rate is None or exempt else tax_on(line.amount, rate, line.tax_behavior)
            ),
            "livemode": False,
            "metadata": dict(line.metadata) if line.metadata is not None else None,
            "product": line.product,
            "quantity": line.quantity,
            "reference": line.reference or f"line_{index}",
            "tax_behavior": line.tax_behavior,
            "tax_code": line.tax_code or DEFAULT_TAX_CODE,
        }
        for index, line in enumerate(req.line_items)
    ]


def _shipping(req: CalculationRequest, rate: Decimal | None) -> dict[str, Any] | None:
    cost = req.shipping_cost
    if cost is None:
        return None
    exempt = req.customer_details.taxability_override != "none"
    return {
        "amount": cost.amount,
        "amount_tax": 0 if rate is None or exempt else tax_on(cost.amount, rate, cost.tax_behavior),
        "tax_behavior": cost.tax_behavior,
        "tax_code": cost.tax_code or SHIPPING_TAX_CODE,
    }


def _customer_details(req: CalculationRequest) -> dict[str, Any]:
    details = req.customer_details
    return {
        "address": _address(req),
        "address_source": details.address_source,
        "ip_address": None,
        "tax_ids": [],
        "taxability_override": details.taxability_override,
    }


def _summary(
    address: dict[str, Any],
    rate: Decimal | None,
    priced: list[tuple[int, int, str]],
) -> dict[str, Any]:
    """Totals and breakdown over (amount, tax, behavior) of the lines and shipping."""
    exclusive = sum(tax for _, tax, behavior in priced if behavior == "exclusive")
    inclusive = sum(tax for _, tax, behavior in priced if behavior == "inclusive")
    breakdown = []
    for behavior, tax in (("exclusive", exclusive), ("inclusive", inclusive)):
        parts = [(amount, t) for amount, t, b in priced if b == behavior]
        if parts:
            taxable = sum(amount for amount, _ in parts) - (tax if behavior == "inclusive" else 0)
            breakdown.append(_breakdown(address, rate, taxable, tax, behavior == "inclusive"))
    return {
        "amount_total": sum(amount for amount, _, _ in priced) + exclusive,
        "tax_amount_exclusive": exclusive,
        "tax_amount_inclusive": inclusive,
        "tax_breakdown": breakdown,
    }


def line_list(url: str, lines: list[dict[str, Any]], limit: int = PAGE) -> dict[str, Any]:
    """Stripe's list object of the first `limit` lines."""
    return {
        "object": "list",
        "data": lines[:limit],
        "has_more": len(lines) > limit,
        "url": url,
    }


def create_calculation(conn: sqlite3.Connection, req: CalculationRequest) -> Outcome:
    """Price the lines and shipping for the address; store the calculation for 90 days."""
    now = int(time.time())
    customer = _customer_details(req)
    rate = rate_of(customer["address"]["country"], customer["address"]["state"])
    lines = _calculation_lines(req, rate)
    shipping = _shipping(req, rate)
    priced = [(li["amount"], li["amount_tax"], li["tax_behavior"]) for li in lines]
    if shipping is not None:
        priced.append((shipping["amount"], shipping["amount_tax"], shipping["tax_behavior"]))
    body: dict[str, Any] = {
        "id": new_id("taxcalc"),
        "object": "tax.calculation",
        "currency": req.currency,
        "customer": None,
        "customer_details": customer,
        "expires_at": now + CALCULATION_TTL_S,
        "livemode": False,
        "ship_from_details": None,
        "shipping_cost": shipping,
        "tax_date": req.tax_date or now,
        **_summary(customer["address"], rate, priced),
    }
    conn.execute(
        "INSERT INTO tax_calculations (id, body, line_items, expires_at, created)"
        " VALUES (?, ?, ?, ?, ?)",
        (body["id"], json.dumps(body), json.dumps(lines), body["expires_at"], now),
    )
    return Outcome(200, with_lines(body, lines, req.expand, "calculations"))


def with_lines(
    body: dict[str, Any], lines: list[dict[str, Any]], expand: Sequence[str], kind: str
) -> dict[str, Any]:
    """The object with its `line_items` list when asked for (always for a transaction)."""
    if kind == "transactions" or "line_items" in expand:
        url = f"/v1/tax/{kind}/{body['id']}/line_items"
        return {**body, "line_items": line_list(url, lines)}
    return body


def _calculation(conn: sqlite3.Connection, calculation_id: str, *, param: str | None) -> Any:
    row = conn.execute(
        "SELECT body, line_items FROM tax_calculations WHERE id = ?", (calculation_id,)
    ).fetchone()
    if row is None:
        raise resource_missing("calculation", calculation_id, param=param)
    return row


def calculation_lines(conn: sqlite3.Connection, calculation_id: str) -> list[dict[str, Any]]:
    """A calculation's line items (404 for an unknown calculation)."""
    lines: list[dict[str, Any]] = json.loads(
        _calculation(conn, calculation_id, param=None)["line_items"]
    )
    return lines


def transaction_lines(conn: sqlite3.Connection, transaction_id: str) -> list[dict[str, Any]]:
    """A transaction's line items (404 for an unknown transaction)."""
    row = conn.execute(
        "SELECT line_items FROM tax_transactions WHERE id = ?", (transaction_id,)
    ).fetchone()
    if row is None:
        raise resource_missing("transaction", transaction_id)
    lines: list[dict[str, Any]] = json.loads(row["line_items"])
    return lines


def page(
    lines: list[dict[str, Any]], url: str, limit: int, starting_after: str | None
) -> dict[str, Any]:
    """One page of line items after `starting_after` (an id among them)."""
    start = 0
    if starting_after is not None:
        ids = [line["id"] for line in lines]
        if starting_after not in ids:
            raise invalid_value(
                f"starting_after: no line item '{starting_after}' in this list",
                param="starting_after",
            )
        start = ids.index(starting_after) + 1
    return line_list(url, lines[start:], limit)


def unique_reference(conn: sqlite3.Connection, reference: str) -> None:
    if conn.execute("SELECT 1 FROM tax_transactions WHERE reference = ?", (reference,)).fetchone():
        raise invalid_value(
            f"A transaction with reference '{reference}' already exists. The reference must "
            "be unique across all transactions.",
            param="reference",
        )


def store_transaction(
    conn: sqlite3.Connection,
    body: dict[str, Any],
    lines: list[dict[str, Any]],
    original: str | None,
) -> None:
    conn.execute(
        "INSERT INTO tax_transactions"
        " (id, reference, type, original_transaction, body, line_items, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            body["id"],
            body["reference"],
            body["type"],
            original,
            json.dumps(body),
            json.dumps(lines),
            body["created"],
        ),
    )


def transaction_line(
    line: dict[str, Any], *, kind: str, original: str | None, **changes: Any
) -> dict[str, Any]:
    return {
        "id": new_id("tax_li"),
        "object": "tax.transaction_line_item",
        "amount": line["amount"],
        "amount_tax": line["amount_tax"],
        "livemode": False,
        "metadata": line.get("metadata"),
        "product": line.get("product"),
        "quantity": line["quantity"],
        "reference": line["reference"],
        "reversal": {"original_line_item": original} if original else None,
        "tax_behavior": line["tax_behavior"],
        "tax_code": line["tax_code"],
        "type": kind,
        **changes,
    }


def create_from_calculation(conn: sqlite3.Connection, req: FromCalculationRequest) -> Outcome:
    """Record the calculation's tax as a transaction (what is reported and filed)."""
    now = int(time.time())
    row = _calculation(conn, req.calculation, param="calculation")
    calc = json.loads(row["body"])
    if calc["expires_at"] < now:
        raise invalid_value(
            f"The calculation '{req.calculation}' has expired and can no longer be used to "
            "create a transaction.",
            param="calculation",
        )
    unique_reference(conn, req.reference)
    lines = [
        transaction_line(line, kind="transaction", original=None)
        for line in json.loads(row["line_items"])
    ]
    shipping = calc["shipping_cost"]
    body: dict[str, Any] = {
        "id": new_id("tax"),
        "object": "tax.transaction",
        "created": now,
        "currency": calc["currency"],
        "customer": None,
        "customer_details": calc["customer_details"],
        "livemode": False,
        "metadata": dict(req.metadata) if req.metadata is not None else None,
        "posted_at": req.posted_at or now,
        "reference": req.reference,
        "reversal": None,
        "ship_from_details": None,
        "shipping_cost": dict(shipping) if shipping else None,
        "tax_date": calc["tax_date"],
        "type": "transaction",
    }
    store_transaction(conn, body, lines, None)
    return Outcome(200, with_lines(body, lines, req.expand, "transactions"))
