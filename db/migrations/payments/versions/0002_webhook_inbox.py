"""payment_webhook_events: the inbox that deduplicates provider webhooks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_webhook_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("webhook_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=128), nullable=True),
        sa.Column("checkout_id", sa.UUID(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_webhook_events")),
        sa.UniqueConstraint(
            "provider", "webhook_id", name=op.f("uq_payment_webhook_events_provider_webhook_id")
        ),
    )
    op.create_index(
        "ix_payment_webhook_events_intent", "payment_webhook_events", ["intent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_payment_webhook_events_intent", table_name="payment_webhook_events")
    op.drop_table("payment_webhook_events")
