"""Alembic environment of the `coupons` database."""

from db.alembic_env import run

run("coupons")
