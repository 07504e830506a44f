"""Alembic environment of the `checkout` database."""

from db.alembic_env import run

run("checkout")
