"""Alembic environment of the `notifications` database."""

from db.alembic_env import run

run("notifications")
