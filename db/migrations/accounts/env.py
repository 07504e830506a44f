"""Alembic environment of the `accounts` database."""

from db.alembic_env import run

run("accounts")
