"""label_purchases (a carrier shipment recorded before its label is bought) and shipping_quotes
(rates quoted for a cart at checkout)

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


def upgrade() -> None:
    op.create_table(
        "label_purchases",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("carrier_shipment_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_rate_id", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('outbound', 'return')", name=op.f("ck_label_purchases_kind_valid")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_label_purchases")),
        sa.UniqueConstraint(
            "carrier_shipment_id", name=op.f("uq_label_purchases_carrier_shipment_id")
        ),
    )
    op.create_index(
        op.f("ix_label_purchases_order_id"), "label_purchases", ["order_id"], unique=False
    )
    op.create_table(
        "shipping_quotes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("cart_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=True),
        sa.Column("address_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("delivery_days", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("carrier_shipment_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_rate_id", sa.String(length=64), nullable=False),
        sa.Column("parcel", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipping_quotes")),
    )
    op.create_index(
        "ix_shipping_quotes_expires_at", "shipping_quotes", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_shipping_quotes_expires_at", table_name="shipping_quotes")
    op.drop_table("shipping_quotes")
    op.drop_index(op.f("ix_label_purchases_order_id"), table_name="label_purchases")
    op.drop_table("label_purchases")
