"""initial schema of the inventory database

Revision ID: 0001
Revises: -
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain_outbox_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_outbox_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_domain_outbox_events_seq")),
    )
    op.create_index(
        "ix_domain_outbox_events_aggregate",
        "domain_outbox_events",
        ["aggregate_type", "aggregate_id", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_domain_outbox_events_processed_at",
        "domain_outbox_events",
        ["processed_at"],
        unique=False,
        postgresql_where=sa.text("processed"),
    )
    op.create_index(
        "ix_domain_outbox_events_unprocessed",
        "domain_outbox_events",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("NOT processed"),
    )
    op.create_table(
        "inventory_items",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("variant_id", sa.UUID(), nullable=False),
        sa.Column("total_stock", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= total_stock", name=op.f("ck_inventory_items_no_oversell")
        ),
        sa.CheckConstraint("total_stock >= 0", name=op.f("ck_inventory_items_stock_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_items")),
        sa.UniqueConstraint("variant_id", name=op.f("uq_inventory_items_variant_id")),
    )
    op.create_table(
        "inventory_reservations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=True),
        sa.Column("variant_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkout_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'released', 'committed', 'expired')",
            name=op.f("ck_inventory_reservations_status_valid"),
        ),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_inventory_reservations_quantity_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_reservations")),
        sa.UniqueConstraint(
            "checkout_id",
            "variant_id",
            name=op.f("uq_inventory_reservations_checkout_id_variant_id"),
        ),
    )
    op.create_index(
        "ix_inventory_reservations_active_expiry",
        "inventory_reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_inventory_reservations_variant",
        "inventory_reservations",
        ["variant_id", "status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_inventory_reservations_variant", table_name="inventory_reservations")
    op.drop_index(
        "ix_inventory_reservations_active_expiry",
        table_name="inventory_reservations",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("inventory_reservations")
    op.drop_table("inventory_items")
    op.drop_index(
        "ix_domain_outbox_events_unprocessed",
        table_name="domain_outbox_events",
        postgresql_where=sa.text("NOT processed"),
    )
    op.drop_index(
        "ix_domain_outbox_events_processed_at",
        table_name="domain_outbox_events",
        postgresql_where=sa.text("processed"),
    )
    op.drop_index("ix_domain_outbox_events_aggregate", table_name="domain_outbox_events")
    op.drop_table("domain_outbox_events")
