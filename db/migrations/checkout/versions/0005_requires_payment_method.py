"""requires_payment_method: a checkout waiting for another payment method after a decline

The status joins the allowed statuses and the open checkouts' partial index (it has not ended);
`payment_error` keeps the buyer-safe `payment.last_error` of the status body.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDED = ("completed", "failed", "cancelled", "expired")
OPEN = ("processing", "requires_action")
NEW = "requires_payment_method"
CHECK = "ck_checkout_sessions_status_valid"
INDEX = "ix_checkout_sessions_open"


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _replace(open_statuses: Sequence[str]) -> None:
    op.drop_constraint(op.f(CHECK), "checkout_sessions", type_="check")
    op.create_check_constraint(
        op.f(CHECK), "checkout_sessions", f"status IN ({_sql_list((*open_statuses, *ENDED))})"
    )
    op.drop_index(INDEX, table_name="checkout_sessions", if_exists=True)
    op.create_index(
        INDEX,
        "checkout_sessions",
        ["step", "updated_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN ({_sql_list(open_statuses)})"),
    )


def upgrade() -> None:
    _replace((*OPEN, NEW))
    op.add_column(
        "checkout_sessions",
        sa.Column("payment_error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("checkout_sessions", "payment_error")
    # A checkout still waiting for a payment method shows as processing to the older code.
    op.execute(f"UPDATE checkout_sessions SET status = 'processing' WHERE status = '{NEW}'")
    _replace(OPEN)
