"""refund requesters: who asked for each refund request (purpose, owner_id), why each refund was
made (purpose)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A request's purpose and owner are filled from its key, the one place the key's form is read:
`return-<return_id>[:retry-<n>]` is a return's refund (owned by the return), any other request an
operator's partial refund of its order (owned by the order). The release before this one records
requests without them while this one rolls out: a trigger fills them the same way on insert, so
that the columns are never empty; a later release drops it. A refund's purpose comes from its
request, or its origin (a dashboard's); a refund the platform made without a request (a
compensation, an operator's retry) stays empty until the provider's next word about it says why.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETURN_KEY = "^return-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(:|$)"
PURPOSES = ("compensation", "operator_retry", "operator_refund", "return", "dashboard")
REQUEST_PURPOSES = ("operator_refund", "return")
FILL = "payment_refund_requests_fill_requester"


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.add_column("payment_refund_requests", sa.Column("purpose", sa.String(16), nullable=True))
    op.add_column("payment_refund_requests", sa.Column("owner_id", sa.UUID(), nullable=True))
    op.add_column("payment_refunds", sa.Column("purpose", sa.String(16), nullable=True))
    op.execute(
        f"UPDATE payment_refund_requests SET purpose = 'return', "
        f"owner_id = CAST(substring(request_key FROM '{RETURN_KEY}') AS uuid) "
        f"WHERE request_key ~ '{RETURN_KEY}'"
    )
    op.execute(
        "UPDATE payment_refund_requests SET purpose = 'operator_refund', owner_id = order_id "
        "WHERE purpose IS NULL"
    )
    op.alter_column("payment_refund_requests", "purpose", nullable=False)
    op.alter_column("payment_refund_requests", "owner_id", nullable=False)
    op.execute(
        f"""
        CREATE FUNCTION {FILL}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.purpose IS NULL AND NEW.request_key ~ '{RETURN_KEY}' THEN
                NEW.purpose := 'return';
                NEW.owner_id := CAST(substring(NEW.request_key FROM '{RETURN_KEY}') AS uuid);
            ELSIF NEW.purpose IS NULL THEN
                NEW.purpose := 'operator_refund';
                NEW.owner_id := NEW.order_id;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {FILL} BEFORE INSERT ON payment_refund_requests "
        f"FOR EACH ROW EXECUTE FUNCTION {FILL}()"
    )
    op.execute(
        "UPDATE payment_refunds AS r SET purpose = q.purpose FROM payment_refund_requests AS q "
        "WHERE q.provider_refund_id = r.provider_refund_id"
    )
    op.execute(
        "UPDATE payment_refunds SET purpose = 'dashboard' "
        "WHERE purpose IS NULL AND origin = 'dashboard'"
    )
    op.create_check_constraint(
        op.f("ck_payment_refund_requests_purpose_valid"),
        "payment_refund_requests",
        f"purpose IN ({_quoted(REQUEST_PURPOSES)})",
    )
    op.create_check_constraint(
        op.f("ck_payment_refunds_purpose_valid"),
        "payment_refunds",
        f"purpose IN ({_quoted(PURPOSES)})",
    )
    # A refund finds its request by the provider's id (operators' lists join on it).
    op.create_index(
        "ix_payment_refund_requests_provider_refund",
        "payment_refund_requests",
        ["provider_refund_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_payment_refund_requests_provider_refund", "payment_refund_requests")
    op.execute(f"DROP TRIGGER {FILL} ON payment_refund_requests")
    op.execute(f"DROP FUNCTION {FILL}()")
    op.drop_constraint(op.f("ck_payment_refunds_purpose_valid"), "payment_refunds")
    op.drop_constraint(op.f("ck_payment_refund_requests_purpose_valid"), "payment_refund_requests")
    op.drop_column("payment_refunds", "purpose")
    op.drop_column("payment_refund_requests", "owner_id")
    op.drop_column("payment_refund_requests", "purpose")
