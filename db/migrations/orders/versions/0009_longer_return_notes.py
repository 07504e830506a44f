"""longer return notes: an operator's note on a return holds what the API accepts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

The API takes notes of up to 1000 characters (a rejection, a settlement by hand); the column
held 500, so a longer note failed with a database error. Widening a varchar rewrites nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Widen order_returns.note to 1000 characters."""
    op.alter_column(
        "order_returns",
        "note",
        type_=sa.String(1000),
        existing_type=sa.String(500),
        existing_nullable=True,
    )


def downgrade() -> None:
    """Back to 500 characters (longer notes are cut to fit)."""
    op.execute("UPDATE order_returns SET note = left(note, 500) WHERE length(note) > 500")
    op.alter_column(
        "order_returns",
        "note",
        type_=sa.String(500),
        existing_type=sa.String(1000),
        existing_nullable=True,
    )
