"""Alembic environment of the `shipping` database."""

from db.alembic_env import run

run("shipping")
