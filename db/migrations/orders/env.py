"""Alembic environment of the `orders` database."""

from db.alembic_env import run

run("orders")
