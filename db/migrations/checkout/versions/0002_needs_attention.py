"""needs_attention: a step where a checkout waits for an operator, and the operator's note

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEPS = (
    "lock_cart",
    "price_cart",
    "reserve_coupon",
    "reserve_inventory",
    "create_order",
    "authorize_payment",
    "awaiting_payment",
    "capture_payment",
    "commit_inventory",
    "confirm_coupon",
    "confirm_order",
    "create_shipment",
    "complete",
    "compensating",
)
# (table, constraint name as created by 0001, column)
CHECKS = (
    ("checkout_sessions", "ck_checkout_sessions_step_valid", "step"),
    ("checkout_steps", "ck_checkout_steps_step_name_valid", "step_name"),
)


def _replace_checks(steps: Sequence[str]) -> None:
    values = ", ".join(f"'{step}'" for step in steps)
    for table, name, column in CHECKS:
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, f"{column} IN ({values})")


def upgrade() -> None:
    _replace_checks((*STEPS, "needs_attention"))
    op.add_column(
        "checkout_sessions", sa.Column("resolution_note", sa.String(length=1000), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("checkout_sessions", "resolution_note")
    op.execute("UPDATE checkout_sessions SET step = 'compensating' WHERE step = 'needs_attention'")
    op.execute("DELETE FROM checkout_steps WHERE step_name = 'needs_attention'")
    _replace_checks(STEPS)
