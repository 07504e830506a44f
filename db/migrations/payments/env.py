"""Alembic environment of the `payments` database."""

from db.alembic_env import run

run("payments")
