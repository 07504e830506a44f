"""product_variants.position: variants keep the order the seller gave them in

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "product_variants",
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
    )
    # Variants created before were shown by SKU: number them that way, so none of them moves.
    op.execute(
        """
        UPDATE product_variants AS v SET position = ranked.position
        FROM (
            SELECT id, row_number() OVER (PARTITION BY product_id ORDER BY sku) - 1 AS position
            FROM product_variants
        ) AS ranked
        WHERE v.id = ranked.id
        """
    )


def downgrade() -> None:
    op.drop_column("product_variants", "position")
