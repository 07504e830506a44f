"""index shipments by the carrier's id: tracking webhooks look shipments up by it

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_shipments_carrier_shipment",
        "shipments",
        ["carrier", "carrier_shipment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_shipments_carrier_shipment", table_name="shipments")
