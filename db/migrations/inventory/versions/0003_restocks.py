"""restocks: returned units put back on the shelf, once per return and order line

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_restocks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("return_id", sa.UUID(), nullable=False),
        sa.Column("order_item_id", sa.UUID(), nullable=False),
        sa.Column("variant_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_inventory_restocks_quantity_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_restocks")),
        sa.UniqueConstraint(
            "return_id",
            "order_item_id",
            name=op.f("uq_inventory_restocks_return_id_order_item_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("inventory_restocks")
