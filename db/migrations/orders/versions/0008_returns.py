"""returns: a buyer's returns of delivered orders, their lines and status transitions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Additive: three new tables, nothing existing changes.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(precision=19, scale=4)
STATUSES = "'requested', 'approved', 'rejected', 'received', 'refunded', 'needs_attention'"


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "order_returns",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("refund_amount", AMOUNT, nullable=False),
        sa.Column("shipping_refund_amount", AMOUNT, server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=True),
        sa.Column("tracking_number", sa.String(length=64), nullable=True),
        sa.Column("label_url", sa.String(length=2048), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_order_returns_status_valid")),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_order_returns_currency_iso4217")
        ),
        sa.CheckConstraint(
            "refund_amount >= 0 AND shipping_refund_amount >= 0 "
            "AND shipping_refund_amount <= refund_amount",
            name=op.f("ck_order_returns_refund_bounded"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_returns_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_returns")),
        sa.UniqueConstraint(
            "order_id", "key_hash", name=op.f("uq_order_returns_order_id_key_hash")
        ),
    )
    op.create_index("ix_order_returns_status", "order_returns", ["status", "created_at"])
    op.create_index(op.f("ix_order_returns_user_id"), "order_returns", ["user_id"])
    op.create_table(
        "order_return_lines",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("return_id", sa.UUID(), nullable=False),
        sa.Column("order_item_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("received_quantity", sa.Integer(), server_default="0", nullable=False),
        sa.Column("restocked_quantity", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refund_amount", AMOUNT, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_return_lines_quantity_positive")),
        sa.CheckConstraint(
            "restocked_quantity >= 0 AND restocked_quantity <= received_quantity "
            "AND received_quantity <= quantity",
            name=op.f("ck_order_return_lines_received_bounded"),
        ),
        sa.CheckConstraint(
            "refund_amount >= 0", name=op.f("ck_order_return_lines_refund_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["return_id"],
            ["order_returns.id"],
            name=op.f("fk_order_return_lines_return_id_order_returns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_item_id"],
            ["order_items.id"],
            name=op.f("fk_order_return_lines_order_item_id_order_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_return_lines")),
        sa.UniqueConstraint(
            "return_id",
            "order_item_id",
            name=op.f("uq_order_return_lines_return_id_order_item_id"),
        ),
    )
    op.create_index("ix_order_return_lines_order_item", "order_return_lines", ["order_item_id"])
    op.create_table(
        "return_state_transitions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("return_id", sa.UUID(), nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        _timestamp("changed_at"),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            f"to_state IN ({STATUSES})", name=op.f("ck_return_state_transitions_to_state_valid")
        ),
        sa.ForeignKeyConstraint(
            ["return_id"],
            ["order_returns.id"],
            name=op.f("fk_return_state_transitions_return_id_order_returns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_state_transitions")),
    )
    op.create_index(
        "ix_return_state_transitions_return",
        "return_state_transitions",
        ["return_id", "changed_at"],
    )


def downgrade() -> None:
    op.drop_table("return_state_transitions")
    op.drop_table("order_return_lines")
    op.drop_table("order_returns")
