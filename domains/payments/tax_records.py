"""A checkout's tax in the payments database: one `tax_transactions` row per checkout (its
calculation, the transaction that recorded it, each line's tax and what was reversed of it) and
one `tax_reversals` row per reversal key, so that commits and reversals are idempotent and every
amount sent to the tax service can be audited afterwards.

Amounts are stored as decimals of the checkout's currency; a line's JSON keeps them as strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.payments.errors import TaxAlreadyRecorded, TaxReversalTooLarge
from domains.payments.models import TaxRecord, TaxReversal
from domains.payments.tax import (
    LineTax,
    ReversalLine,
    TaxResult,
    TaxStatus,
    remaining,
    share_of_tax,
)
from kit.money import Money

SHIPPING = "shipping"


async def find(
    session: AsyncSession, checkout_id: uuid.UUID, *, lock: bool = False
) -> TaxRecord | None:
    """The checkout's tax row, if its tax was calculated."""
    query = select(TaxRecord).where(TaxRecord.checkout_id == checkout_id)
    found: TaxRecord | None = await session.scalar(query.with_for_update() if lock else query)
    return found


async def find_reversal(session: AsyncSession, reversal_key: str) -> TaxReversal | None:
    """The reversal made under a key, if any."""
    found: TaxReversal | None = await session.scalar(
        select(TaxReversal).where(TaxReversal.reversal_key == reversal_key)
    )
    return found


def _line_json(line: LineTax) -> dict[str, Any]:
    return {
        "amount": str(line.amount.amount),
        "tax": str(line.tax.amount),
        "item_id": line.item_id,
        "reversed_amount": "0",
        "reversed_tax": "0",
    }


async def record_calculation(
    session: AsyncSession,
    checkout_id: uuid.UUID,
    *,
    provider: str,
    result: TaxResult,
    untaxed_reason: str | None = None,
) -> TaxRecord:
    """Store (or replace, until it is recorded as a transaction) a checkout's calculation."""
    row = await find(session, checkout_id, lock=True)
    if row is None:
        row = TaxRecord(checkout_id=checkout_id)
        session.add(row)
    elif row.status not in (TaxStatus.CALCULATED, TaxStatus.UNTAXED):
        raise TaxAlreadyRecorded(
            "the checkout's tax is already recorded", checkout_id=str(checkout_id)
        )
    row.provider = provider
    row.status = TaxStatus.UNTAXED if result.id is None else TaxStatus.CALCULATED
    row.currency = result.currency
    row.calculation_id = result.id
    row.tax_amount = result.total_tax.amount
    row.shipping_amount = result.shipping.amount
    row.shipping_tax = result.shipping_tax.amount
    row.lines = {line.reference: _line_json(line) for line in result.lines}
    row.untaxed_reason = untaxed_reason
    await session.flush()
    return row


def record_commit(row: TaxRecord, transaction: TaxResult) -> None:
    """The calculation is now a transaction: its id, and each line's transaction line id."""
    items = {line.reference: line.item_id for line in transaction.lines}
    row.transaction_id = transaction.id
    row.status = TaxStatus.COMMITTED
    row.lines = {ref: {**line, "item_id": items.get(ref)} for ref, line in row.lines.items()}


def result_of(row: TaxRecord) -> TaxResult:
    """The stored calculation as the provider reported it."""
    currency = row.currency
    return TaxResult(
        id=row.transaction_id or row.calculation_id,
        currency=currency,
        lines=tuple(
            LineTax(
                ref,
                Money.of(line["amount"], currency),
                Money.of(line["tax"], currency),
                line["item_id"],
            )
            for ref, line in row.lines.items()
        ),
        shipping=Money.of(row.shipping_amount, currency),
        shipping_tax=Money.of(row.shipping_tax, currency),
    )


def _left(row: TaxRecord, reference: str) -> tuple[Money, Money]:
    """What remains of a line (amount, tax) after the reversals so far."""
    line = row.lines[reference]
    currency = row.currency
    return (
        remaining(Money.of(line["amount"], currency), Money.of(line["reversed_amount"], currency)),
        remaining(Money.of(line["tax"], currency), Money.of(line["reversed_tax"], currency)),
    )


def _shipping_left(row: TaxRecord, reversals: Sequence[TaxReversal]) -> tuple[Money, Money]:
    currency = row.currency
    amount, tax = Money.of(row.shipping_amount, currency), Money.of(row.shipping_tax, currency)
    for reversal in reversals:
        shipped = reversal.lines.get(SHIPPING)
        if shipped:
            amount = remaining(amount, Money.of(shipped["amount"], currency))
            tax = remaining(tax, Money.of(shipped["tax"], currency))
    return amount, tax


def plan_partial(
    row: TaxRecord,
    amounts: Mapping[str, Money] | None,
    shipping: Money | None,
    reversals: Sequence[TaxReversal],
) -> tuple[list[ReversalLine], tuple[Money, Money] | None]:
    """The lines and shipping to reverse (everything that remains when `amounts` is None),
    each with its share of the tax that remains; TaxReversalTooLarge beyond what remains."""
    planned: list[ReversalLine] = []
    wanted = amounts if amounts is not None else {ref: _left(row, ref)[0] for ref in row.lines}
    for reference, amount in wanted.items():
        if reference not in row.lines:
            raise TaxReversalTooLarge("no such line in the checkout", reference=reference)
        amount_left, tax_left = _left(row, reference)
        if amount > amount_left:
            raise TaxReversalTooLarge(
                "more than remains of the line", reference=reference, remaining=str(amount_left)
            )
        tax = share_of_tax(tax_left, amount, amount_left)
        if not (amount.is_zero() and tax.is_zero()):
            planned.append(ReversalLine(row.lines[reference]["item_id"], reference, amount, tax))
    ship_left, ship_tax_left = _shipping_left(row, reversals)
    want_ship = ship_left if amounts is None else shipping
    if want_ship is None or want_ship.is_zero():
        return planned, None
    if want_ship > ship_left:
        raise TaxReversalTooLarge("more than remains of the shipping", remaining=str(ship_left))
    return planned, (want_ship, share_of_tax(ship_tax_left, want_ship, ship_left))


def _all_reversed(
    row: TaxRecord, lines: Mapping[str, Any], reversals: Sequence[TaxReversal]
) -> bool:
    shipping_left, _ = _shipping_left(row, reversals)
    return shipping_left.is_zero() and all(
        Decimal(line["reversed_amount"]) >= Decimal(line["amount"]) for line in lines.values()
    )


async def record_reversal(
    session: AsyncSession,
    row: TaxRecord,
    *,
    key: str,
    mode: str,
    reversal: TaxResult,
    earlier: Sequence[TaxReversal],
) -> TaxReversal:
    """Store a reversal and add what it took back to each line of the checkout's tax."""
    currency = row.currency
    lines: dict[str, Any] = {}
    updated = dict(row.lines)
    for line in reversal.lines:
        lines[line.reference] = {"amount": str(line.amount.amount), "tax": str(line.tax.amount)}
        if line.reference in updated:
            before = updated[line.reference]
            updated[line.reference] = {
                **before,
                "reversed_amount": str(Decimal(before["reversed_amount"]) + line.amount.amount),
                "reversed_tax": str(Decimal(before["reversed_tax"]) + line.tax.amount),
            }
    if not (reversal.shipping.is_zero() and reversal.shipping_tax.is_zero()):
        lines[SHIPPING] = {
            "amount": str(reversal.shipping.amount),
            "tax": str(reversal.shipping_tax.amount),
        }
    assert reversal.id is not None
    record = TaxReversal(
        tax_transaction_id=row.id,
        reversal_key=key,
        transaction_id=reversal.id,
        mode=mode,
        tax_amount=Money.of(reversal.total_tax.amount, currency).amount,
        lines=lines,
    )
    session.add(record)
    row.lines = updated
    row.reversed_tax = row.reversed_tax + reversal.total_tax.amount
    if mode == "full" or _all_reversed(row, updated, [*earlier, record]):
        row.status = TaxStatus.REVERSED
    await session.flush()
    return record


async def reversals_of(session: AsyncSession, row: TaxRecord) -> list[TaxReversal]:
    """The reversals of a checkout's tax so far, oldest first."""
    found = await session.scalars(
        select(TaxReversal)
        .where(TaxReversal.tax_transaction_id == row.id)
        .order_by(TaxReversal.created_at)
    )
    return list(found)


def reversal_result(reversal: TaxReversal, currency: str) -> TaxResult:
    """A stored reversal as the provider reported it: what it took back, by line and shipping."""
    shipping = reversal.lines.get(SHIPPING) or {"amount": "0", "tax": "0"}
    return TaxResult(
        id=reversal.transaction_id,
        currency=currency,
        lines=tuple(
            LineTax(ref, Money.of(line["amount"], currency), Money.of(line["tax"], currency))
            for ref, line in reversal.lines.items()
            if ref != SHIPPING
        ),
        shipping=Money.of(shipping["amount"], currency),
        shipping_tax=Money.of(shipping["tax"], currency),
    )
