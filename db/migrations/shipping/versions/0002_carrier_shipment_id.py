"""shipments.carrier_shipment_id: the carrier's booking id, needed to cancel a booking

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "shipments", sa.Column("carrier_shipment_id", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("shipments", "carrier_shipment_id")
