"""initial schema of the checkout database

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
        "checkout_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("cart_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=32), server_default="lock_cart", nullable=False),
        sa.Column("payment_status", sa.String(length=24), nullable=True),
        sa.Column("next_action", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("order_id", sa.UUID(), nullable=True),
        sa.Column("order_number", sa.String(length=32), nullable=True),
        sa.Column("total_amount", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('processing', 'requires_action', 'completed', 'failed', 'cancelled', 'expired')",
            name=op.f("ck_checkout_sessions_status_valid"),
        ),
        sa.CheckConstraint(
            "step IN ('lock_cart', 'price_cart', 'reserve_coupon', 'reserve_inventory', 'create_order', 'authorize_payment', 'awaiting_payment', 'capture_payment', 'commit_inventory', 'confirm_coupon', 'confirm_order', 'create_shipment', 'complete', 'compensating')",
            name=op.f("ck_checkout_sessions_step_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("uq_checkout_sessions_user_id_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_checkout_sessions_cart_id"), "checkout_sessions", ["cart_id"], unique=False
    )
    op.create_index(
        op.f("ix_checkout_sessions_user_id"), "checkout_sessions", ["user_id"], unique=False
    )
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
        "checkout_steps",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("step_name", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('started', 'completed', 'failed', 'compensated')",
            name=op.f("ck_checkout_steps_status_valid"),
        ),
        sa.CheckConstraint(
            "step_name IN ('lock_cart', 'price_cart', 'reserve_coupon', 'reserve_inventory', 'create_order', 'authorize_payment', 'awaiting_payment', 'capture_payment', 'commit_inventory', 'confirm_coupon', 'confirm_order', 'create_shipment', 'complete', 'compensating')",
            name=op.f("ck_checkout_steps_step_name_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["checkout_sessions.id"],
            name=op.f("fk_checkout_steps_session_id_checkout_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_steps")),
        sa.UniqueConstraint(
            "session_id", "step_name", name=op.f("uq_checkout_steps_session_id_step_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("checkout_steps")
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
    op.drop_index(op.f("ix_checkout_sessions_user_id"), table_name="checkout_sessions")
    op.drop_index(op.f("ix_checkout_sessions_cart_id"), table_name="checkout_sessions")
    op.drop_table("checkout_sessions")
