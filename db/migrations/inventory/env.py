"""Alembic environment of the `inventory` database."""

from db.alembic_env import run

run("inventory")
