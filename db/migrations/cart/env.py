"""Alembic environment of the `cart` database."""

from db.alembic_env import run

run("cart")
