"""Schema management: one Alembic environment per domain database."""
