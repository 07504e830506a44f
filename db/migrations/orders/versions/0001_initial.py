"""initial schema of the orders database

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
    # Autogenerate does not see sequences: the order-number source is created by hand.
    op.execute(sa.schema.CreateSequence(sa.Sequence("order_number_seq", start=100001)))
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
        "orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("order_number", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("total_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("checkout_id", sa.UUID(), nullable=False),
        sa.Column("subtotal_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("discount_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("coupon_code", sa.String(length=64), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_orders_currency_iso4217")),
        sa.CheckConstraint(
            "status IN ('pending_payment', 'paid', 'fulfilling', 'shipped', 'delivered', 'cancelled', 'refunded')",
            name=op.f("ck_orders_status_valid"),
        ),
        sa.CheckConstraint(
            "subtotal_amount >= 0 AND discount_amount >= 0 AND total_amount >= 0",
            name=op.f("ck_orders_amounts_non_negative"),
        ),
        sa.CheckConstraint(
            "total_amount = subtotal_amount - discount_amount",
            name=op.f("ck_orders_total_is_subtotal_less_discount"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("checkout_id", name=op.f("uq_orders_checkout_id")),
        sa.UniqueConstraint("order_number", name=op.f("uq_orders_order_number")),
    )
    op.create_index(op.f("ix_orders_user_id"), "orders", ["user_id"], unique=False)
    op.create_table(
        "order_addresses",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("address", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint(
            "type IN ('shipping', 'billing')", name=op.f("ck_order_addresses_type_valid")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_addresses_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_addresses")),
        sa.UniqueConstraint("order_id", "type", name=op.f("uq_order_addresses_order_id_type")),
    )
    op.create_table(
        "order_items",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("variant_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("total_price", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_items_quantity_positive")),
        sa.CheckConstraint(
            "unit_price >= 0 AND total_price >= 0", name=op.f("ck_order_items_prices_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_items_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_items")),
        sa.UniqueConstraint(
            "order_id", "variant_id", name=op.f("uq_order_items_order_id_variant_id")
        ),
    )
    op.create_table(
        "order_state_transitions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "to_state IN ('pending_payment', 'paid', 'fulfilling', 'shipped', 'delivered', 'cancelled', 'refunded')",
            name=op.f("ck_order_state_transitions_to_state_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_state_transitions_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_state_transitions")),
    )
    op.create_index(
        "ix_order_state_transitions_order",
        "order_state_transitions",
        ["order_id", "changed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_order_state_transitions_order", table_name="order_state_transitions")
    op.drop_table("order_state_transitions")
    op.drop_table("order_items")
    op.drop_table("order_addresses")
    op.drop_index(op.f("ix_orders_user_id"), table_name="orders")
    op.drop_table("orders")
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
    op.execute(sa.schema.DropSequence(sa.Sequence("order_number_seq")))
