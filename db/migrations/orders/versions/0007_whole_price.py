"""whole price: shipping and tax on orders, each line's discount share and tax

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Additive: the new amounts default to zero, which is what every existing order had (no shipping
charge, no tax). Existing lines get their share of their order's discount computed now, by the
same rule new orders use, so refunds of old orders' lines are exact too.
"""

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op
from babel.numbers import get_currency_precision

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(precision=19, scale=4)
OLD_TOTAL = (
    "ck_orders_total_is_subtotal_less_discount",
    "total_amount = subtotal_amount - discount_amount",
)
NEW_TOTAL = (
    "ck_orders_total_is_the_whole_price",
    "total_amount = subtotal_amount - discount_amount + shipping_amount + tax_amount",
)


def _amount(table: str, name: str) -> None:
    op.add_column(table, sa.Column(name, AMOUNT, server_default="0", nullable=False))


def _shares(discount: Decimal, totals: list[Decimal], quantum: Decimal) -> list[Decimal]:
    """The discount pro rata to the line totals, half-up, the remainder on the largest line (a
    frozen copy of the rule in `kit.money.allocate`: a migration must not change with the code)."""
    whole = sum(totals, Decimal(0))
    largest = max(range(len(totals)), key=lambda i: (totals[i], -i))
    if whole == 0:
        return [discount if i == largest else Decimal(0) for i in range(len(totals))]
    shares = [(discount * t / whole).quantize(quantum, rounding=ROUND_HALF_UP) for t in totals]
    shares[largest] += discount - sum(shares, Decimal(0))
    return shares


def _allocate_existing_discounts() -> None:
    bind = op.get_bind()
    orders = bind.execute(
        sa.text("SELECT id, discount_amount, currency FROM orders WHERE discount_amount > 0")
    ).all()
    for order_id, discount, currency in orders:
        lines = bind.execute(
            sa.text("SELECT id, total_price FROM order_items WHERE order_id = :o ORDER BY sku"),
            {"o": order_id},
        ).all()
        if not lines:
            continue
        quantum = Decimal(1).scaleb(-get_currency_precision(currency))
        shares = _shares(Decimal(discount), [Decimal(total) for _, total in lines], quantum)
        for (line_id, _), share in zip(lines, shares, strict=True):
            bind.execute(
                sa.text("UPDATE order_items SET discount_amount = :d WHERE id = :i"),
                {"d": share, "i": line_id},
            )


def upgrade() -> None:
    _amount("orders", "shipping_amount")
    _amount("orders", "tax_amount")
    _amount("order_items", "discount_amount")
    _amount("order_items", "tax_amount")
    op.create_check_constraint(
        op.f("ck_orders_shipping_and_tax_non_negative"),
        "orders",
        "shipping_amount >= 0 AND tax_amount >= 0",
    )
    op.drop_constraint(op.f(OLD_TOTAL[0]), "orders", type_="check")
    op.create_check_constraint(op.f(NEW_TOTAL[0]), "orders", NEW_TOTAL[1])
    _allocate_existing_discounts()
    op.create_check_constraint(
        op.f("ck_order_items_line_money_bounded"),
        "order_items",
        "discount_amount >= 0 AND discount_amount <= total_price AND tax_amount >= 0",
    )


def downgrade() -> None:
    # Refused by the old total's check while an order carries shipping or tax: dropping them
    # would lose money the buyer paid.
    op.drop_constraint(op.f("ck_order_items_line_money_bounded"), "order_items", type_="check")
    op.drop_constraint(op.f(NEW_TOTAL[0]), "orders", type_="check")
    op.drop_constraint(op.f("ck_orders_shipping_and_tax_non_negative"), "orders", type_="check")
    for table, name in (
        ("order_items", "tax_amount"),
        ("order_items", "discount_amount"),
        ("orders", "tax_amount"),
        ("orders", "shipping_amount"),
    ):
        op.drop_column(table, name)
    op.create_check_constraint(op.f(OLD_TOTAL[0]), "orders", OLD_TOTAL[1])
