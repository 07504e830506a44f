"""Reversals of Stripe Tax transactions: all of one (`mode=full`) or some of its amounts
(`mode=partial`), never more than remains of a line or of the shipping."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandbox.psp.errors import invalid_value, resource_missing
from sandbox.psp.models import Outcome, new_id
from sandbox.psp.tax import store_transaction, transaction_line, unique_reference, with_lines
from sandbox.psp.tax_models import ReversalRequest

SHIPPING = "shipping"


@dataclass
class Remaining:
    """What is left to reverse of a transaction: per original line item, and of the shipping."""

    amount: Counter[str] = field(default_factory=Counter)
    tax: Counter[str] = field(default_factory=Counter)
    reversed_any: bool = False


def _remaining(conn: sqlite3.Connection, original: dict[str, Any], lines: list[Any]) -> Remaining:
    left = Remaining()
    for line in lines:
        left.amount[line["id"]] += line["amount"]
        left.tax[line["id"]] += line["amount_tax"]
    if original["shipping_cost"]:
        left.amount[SHIPPING] += original["shipping_cost"]["amount"]
        left.tax[SHIPPING] += original["shipping_cost"]["amount_tax"]
    rows = conn.execute(
        "SELECT body, line_items FROM tax_transactions WHERE original_transaction = ?",
        (original["id"],),
    ).fetchall()
    for row in rows:
        left.reversed_any = True
        for line in json.loads(row["line_items"]):
            left.amount[line["reversal"]["original_line_item"]] += line["amount"]
            left.tax[line["reversal"]["original_line_item"]] += line["amount_tax"]
        shipping = json.loads(row["body"])["shipping_cost"]
        if shipping:
            left.amount[SHIPPING] += shipping["amount"]
            left.tax[SHIPPING] += shipping["amount_tax"]
    return left


def _original(conn: sqlite3.Connection, transaction_id: str) -> tuple[dict[str, Any], list[Any]]:
    row = conn.execute(
        "SELECT body, line_items FROM tax_transactions WHERE id = ?", (transaction_id,)
    ).fetchone()
    if row is None:
        raise resource_missing("transaction", transaction_id, param="original_transaction")
    body: dict[str, Any] = json.loads(row["body"])
    if body["type"] != "transaction":
        raise invalid_value(
            f"Transaction '{transaction_id}' is a reversal; only a transaction of type "
            "`transaction` can be reversed.",
            param="original_transaction",
        )
    return body, json.loads(row["line_items"])


def _over(what: str, param: str, amount: int, left: int) -> None:
    if -amount > left:
        raise invalid_value(
            f"The {what} to reverse ({-amount}) exceeds what remains to be reversed ({left}).",
            param=param,
        )


def _partial_lines(req: ReversalRequest, lines: list[Any], left: Remaining) -> list[dict[str, Any]]:
    by_id = {line["id"]: line for line in lines}
    reversed_lines = []
    for index, given in enumerate(req.line_items):
        param = f"line_items[{index}]"
        line = by_id.get(given.original_line_item)
        if line is None:
            raise invalid_value(
                f"Line item '{given.original_line_item}' is not part of transaction "
                f"'{req.original_transaction}'.",
                param=f"{param}[original_line_item]",
            )
        _over("amount", f"{param}[amount]", given.amount, left.amount[line["id"]])
        _over("tax amount", f"{param}[amount_tax]", given.amount_tax, left.tax[line["id"]])
        reversed_lines.append(
            transaction_line(
                line,
                kind="reversal",
                original=line["id"],
                amount=given.amount,
                amount_tax=given.amount_tax,
                quantity=given.quantity or line["quantity"],
                reference=given.reference,
                metadata=dict(given.metadata) if given.metadata is not None else None,
            )
        )
    return reversed_lines


def _partial_shipping(
    req: ReversalRequest, original: dict[str, Any], left: Remaining
) -> dict[str, Any] | None:
    given = req.shipping_cost
    if given is None:
        return None
    if not original["shipping_cost"]:
        raise invalid_value(
            "The original transaction has no shipping cost to reverse.", param="shipping_cost"
        )
    _over("shipping amount", "shipping_cost[amount]", given.amount, left.amount[SHIPPING])
    _over("shipping tax", "shipping_cost[amount_tax]", given.amount_tax, left.tax[SHIPPING])
    return {**original["shipping_cost"], "amount": given.amount, "amount_tax": given.amount_tax}


def _full(original: dict[str, Any], lines: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
    reversed_lines = [
        transaction_line(
            line,
            kind="reversal",
            original=line["id"],
            amount=-line["amount"],
            amount_tax=-line["amount_tax"],
        )
        for line in lines
    ]
    shipping = original["shipping_cost"]
    negated = (
        {**shipping, "amount": -shipping["amount"], "amount_tax": -shipping["amount_tax"]}
        if shipping
        else None
    )
    return reversed_lines, negated


def create_reversal(conn: sqlite3.Connection, req: ReversalRequest) -> Outcome:
    """A transaction of type `reversal` taking back all or part of the original."""
    original, lines = _original(conn, req.original_transaction)
    left = _remaining(conn, original, lines)
    if req.mode == "full":
        if left.reversed_any:
            raise invalid_value(
                f"Transaction '{original['id']}' has already been reversed in part or in full; "
                "reverse what remains with mode=partial.",
                param="mode",
            )
        reversed_lines, shipping = _full(original, lines)
    else:
        reversed_lines = _partial_lines(req, lines, left)
        shipping = _partial_shipping(req, original, left)
    unique_reference(conn, req.reference)
    now = int(time.time())
    body: dict[str, Any] = {
        **original,
        "id": new_id("tax"),
        "created": now,
        "metadata": dict(req.metadata) if req.metadata is not None else None,
        "posted_at": now,
        "reference": req.reference,
        "reversal": {"original_transaction": original["id"]},
        "shipping_cost": shipping,
        "type": "reversal",
    }
    store_transaction(conn, body, reversed_lines, original["id"])
    return Outcome(200, with_lines(body, reversed_lines, req.expand, "transactions"))
