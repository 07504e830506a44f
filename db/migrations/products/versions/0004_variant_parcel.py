"""product_variants.weight_g, length_mm, width_mm, height_mm: what a unit weighs and measures
packed, the parcel shipping rates are priced for (existing variants get the defaults)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("weight_g", sa.Integer(), "500"),
    ("length_mm", sa.Integer(), "300"),
    ("width_mm", sa.Integer(), "200"),
    ("height_mm", sa.Integer(), "100"),
)


def upgrade() -> None:
    for name, type_, default in COLUMNS:
        op.add_column(
            "product_variants", sa.Column(name, type_, server_default=default, nullable=False)
        )
    op.create_check_constraint(
        op.f("ck_product_variants_parcel_positive"),
        "product_variants",
        "weight_g > 0 AND length_mm > 0 AND width_mm > 0 AND height_mm > 0",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_product_variants_parcel_positive"), "product_variants", type_="check"
    )
    for name, _, _ in reversed(COLUMNS):
        op.drop_column("product_variants", name)
