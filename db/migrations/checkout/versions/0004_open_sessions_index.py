"""ix_checkout_sessions_open: the checkouts not ended, per step and by last progress

Read every 30 s by the checkout worker's gauges (`checkouts_open`, `checkouts_oldest_age`); a
partial index stays as small as the number of running checkouts. Built CONCURRENTLY: writes to
checkout_sessions go on while it is built.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_checkout_sessions_open",
            "checkout_sessions",
            ["step", "updated_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('processing', 'requires_action')"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_checkout_sessions_open",
            table_name="checkout_sessions",
            postgresql_concurrently=True,
            if_exists=True,
        )
