"""refund requests: a refund the platform was asked for, held against the capture until sent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_refund_requests",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("request_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=128), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("allocations", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
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
            "status IN ('requested', 'sent', 'rejected')",
            name=op.f("ck_payment_refund_requests_status_valid"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_refund_requests_amount_positive")),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_payment_refund_requests_currency_iso4217")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_payment_refund_requests_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refund_requests")),
        sa.UniqueConstraint("request_key", name=op.f("uq_payment_refund_requests_request_key")),
    )
    op.create_index(
        "ix_payment_refund_requests_payment",
        "payment_refund_requests",
        ["payment_id", "status"],
    )
    op.create_index(
        "ix_payment_refund_requests_order", "payment_refund_requests", ["order_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("payment_refund_requests")
