"""tax_transactions and tax_reversals: each checkout's tax, what recorded it, what reversed it

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

MONEY = sa.Numeric(19, 4)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "tax_transactions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("checkout_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("calculation_id", sa.String(length=128), nullable=True),
        sa.Column("transaction_id", sa.String(length=128), nullable=True),
        sa.Column("tax_amount", MONEY, nullable=False),
        sa.Column("shipping_amount", MONEY, nullable=False),
        sa.Column("shipping_tax", MONEY, nullable=False),
        sa.Column("reversed_tax", MONEY, server_default="0", nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("untaxed_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('calculated', 'committed', 'reversed', 'untaxed')",
            name=op.f("ck_tax_transactions_status_valid"),
        ),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_tax_transactions_currency_iso4217")
        ),
        sa.CheckConstraint(
            "tax_amount >= 0 AND shipping_amount >= 0 AND shipping_tax >= 0 "
            "AND shipping_tax <= tax_amount AND reversed_tax >= 0 AND reversed_tax <= tax_amount",
            name=op.f("ck_tax_transactions_amounts_bounded"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_transactions")),
        sa.UniqueConstraint("checkout_id", name=op.f("uq_tax_transactions_checkout_id")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_tax_transactions_transaction_id")),
    )
    op.create_table(
        "tax_reversals",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tax_transaction_id", sa.UUID(), nullable=False),
        sa.Column("reversal_key", sa.String(length=255), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("tax_amount", MONEY, nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("mode IN ('full', 'partial')", name=op.f("ck_tax_reversals_mode_valid")),
        sa.CheckConstraint(
            "tax_amount >= 0", name=op.f("ck_tax_reversals_tax_amount_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["tax_transaction_id"],
            ["tax_transactions.id"],
            name=op.f("fk_tax_reversals_tax_transaction_id_tax_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_reversals")),
        sa.UniqueConstraint("reversal_key", name=op.f("uq_tax_reversals_reversal_key")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_tax_reversals_transaction_id")),
    )
    op.create_index(
        op.f("ix_tax_reversals_tax_transaction_id"),
        "tax_reversals",
        ["tax_transaction_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tax_reversals_tax_transaction_id"), table_name="tax_reversals")
    op.drop_table("tax_reversals")
    op.drop_table("tax_transactions")
