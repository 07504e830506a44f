"""Alembic environment of the `products` database."""

from db.alembic_env import run

run("products")
