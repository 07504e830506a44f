"""refunds: `refunded_amount` on orders and the `partially_refunded` status

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "'pending_payment', 'paid', 'fulfilling', 'shipped', 'delivered', 'cancelled'"
STATUSES = f"{BEFORE}, 'partially_refunded', 'refunded'"
CHECKS = (
    ("orders", "ck_orders_status_valid", "status"),
    ("order_state_transitions", "ck_order_state_transitions_to_state_valid", "to_state"),
)


def _statuses(values: str) -> None:
    for table, name, column in CHECKS:
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, f"{column} IN ({values})")


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "refunded_amount", sa.Numeric(precision=19, scale=4), server_default="0", nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("ck_orders_refunded_bounded"),
        "orders",
        "refunded_amount >= 0 AND refunded_amount <= total_amount",
    )
    _statuses(STATUSES)


def downgrade() -> None:
    op.execute("DELETE FROM order_state_transitions WHERE to_state = 'partially_refunded'")
    op.execute("UPDATE orders SET status = 'paid' WHERE status = 'partially_refunded'")
    _statuses(f"{BEFORE}, 'refunded'")
    op.drop_constraint(op.f("ck_orders_refunded_bounded"), "orders", type_="check")
    op.drop_column("orders", "refunded_amount")
