"""refunds and disputes: every refund with its status and origin, every dispute; `disputed`

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYMENT_STATUSES = (
    "'pending', 'requires_action', 'processing', 'authorized', 'captured', 'failed', 'voided', "
    "'refunded'"
)


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column(
            name,
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        )
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    op.drop_constraint(op.f("ck_payments_status_valid"), "payments", type_="check")
    op.create_check_constraint(
        op.f("ck_payments_status_valid"),
        "payments",
        f"status IN ({PAYMENT_STATUSES}, 'disputed')",
    )
    op.create_table(
        "payment_refunds",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolution_note", sa.String(length=500), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name=op.f("ck_payment_refunds_status_valid"),
        ),
        sa.CheckConstraint(
            "origin IN ('platform', 'dashboard')", name=op.f("ck_payment_refunds_origin_valid")
        ),
        sa.CheckConstraint(
            "resolution IN ('retried', 'resolved')",
            name=op.f("ck_payment_refunds_resolution_valid"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_refunds_amount_positive")),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_payment_refunds_currency_iso4217")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_refunds_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refunds")),
        sa.UniqueConstraint(
            "provider_refund_id", name=op.f("uq_payment_refunds_provider_refund_id")
        ),
    )
    op.create_index(
        "ix_payment_refunds_payment", "payment_refunds", ["payment_id", "created_at"], unique=False
    )
    op.create_index("ix_payment_refunds_status", "payment_refunds", ["status"], unique=False)
    op.create_table(
        "payment_disputes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("provider_dispute_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("evidence_due_by", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('warning_needs_response', 'warning_under_review', 'warning_closed', "
            "'needs_response', 'under_review', 'won', 'lost', 'prevented')",
            name=op.f("ck_payment_disputes_status_valid"),
        ),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payment_disputes_amount_non_negative")),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_payment_disputes_currency_iso4217")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_disputes_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_disputes")),
        sa.UniqueConstraint(
            "provider_dispute_id", name=op.f("uq_payment_disputes_provider_dispute_id")
        ),
    )
    op.create_index("ix_payment_disputes_payment", "payment_disputes", ["payment_id"])
    op.create_index("ix_payment_disputes_status", "payment_disputes", ["status"])


def downgrade() -> None:
    op.drop_table("payment_disputes")
    op.drop_table("payment_refunds")
    op.execute("UPDATE payments SET status = 'captured' WHERE status = 'disputed'")
    op.drop_constraint(op.f("ck_payments_status_valid"), "payments", type_="check")
    op.create_check_constraint(
        op.f("ck_payments_status_valid"), "payments", f"status IN ({PAYMENT_STATUSES})"
    )
