"""Every table and column of the seed exists, with a fitting type, in the migrated databases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kit.db import DomainDatabase
from kit.settings import DOMAINS
from tests.db import dbml

# Seed type -> PostgreSQL types that honour it (information_schema.columns.data_type).
FITTING_TYPES = {
    "uuid": {"uuid"},
    "varchar": {"character varying", "text"},
    "text": {"text"},
    "timestamp": {"timestamp with time zone", "timestamp without time zone"},
    "json": {"json", "jsonb"},
    "decimal": {"numeric"},
    "int": {"integer", "bigint"},
    "boolean": {"boolean"},
}

SEED = dbml.load()
# Tables the platform adds beside the seed's, each explained in its model's docstring.
ADDED_TABLES = {
    "cart": {"cart_releases"},
    "payments": {
        "payment_webhook_events",
        "tax_transactions",
        "tax_reversals",
        "payment_refunds",
        "payment_disputes",
        "payment_refund_requests",
    },
    "notifications": {"consumer_inbox", "consumer_dead_letters", "order_recipients"},
    "orders": {
        "consumer_inbox",
        "consumer_dead_letters",
        "order_returns",
        "order_return_lines",
        "return_state_transitions",
    },
    "inventory": {"inventory_restocks"},
    "shipping": {"label_purchases", "shipping_quotes"},
}
# Beside every outbox: which relay publishes which partition of it (kit/outbox.py).
EVERY_DATABASE_ADDS = {"outbox_relay_leases"}


def test_the_transcription_covers_ten_databases_and_every_seed_table() -> None:
    assert sorted(SEED.databases) == sorted(DOMAINS)
    grouped = {t for tables in SEED.databases.values() for t in tables}
    assert grouped == set(SEED.tables)
    assert all(column.type in FITTING_TYPES for cols in SEED.tables.values() for column in cols)


async def _columns(db: DomainDatabase) -> dict[str, dict[str, str]]:
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        )
        found: dict[str, dict[str, str]] = {}
        for table, column, data_type in rows:
            found.setdefault(table, {})[column] = data_type
        return found


async def _keyed_columns(db: DomainDatabase, kind: str) -> set[tuple[str, str]]:
    """(table, column) pairs that alone form a constraint of `kind` (PRIMARY KEY or UNIQUE)."""
    async with db.begin() as session:
        rows = await session.execute(
            text(
                """
                SELECT tc.table_name, min(kcu.column_name)
                FROM information_schema.table_constraints tc
                JOIN information_schema.key_column_usage kcu
                  ON kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name
                WHERE tc.table_schema = 'public' AND tc.constraint_type = :kind
                GROUP BY tc.table_name, tc.constraint_name
                HAVING count(*) = 1
                """
            ),
            {"kind": kind},
        )
        return {(table, column) for table, column in rows}


@pytest.mark.parametrize("domain", DOMAINS)
async def test_database_holds_exactly_its_seed_tables_with_every_column(
    domain: str, databases: dict[str, DomainDatabase]
) -> None:
    db = databases[domain]
    found = await _columns(db)
    expected_tables = set(SEED.databases[domain])
    # No shared tables: a database holds its own seed tables, its documented additions and
    # Alembic's bookkeeping, and nothing of another domain.
    added = ADDED_TABLES.get(domain, set()) | EVERY_DATABASE_ADDS
    assert set(found) - {"alembic_version"} == expected_tables | added

    primary = await _keyed_columns(db, "PRIMARY KEY")
    unique = await _keyed_columns(db, "UNIQUE")
    for table in expected_tables:
        for column in SEED.tables[table]:
            assert column.name in found[table], f"{domain}.{table}.{column.name} is missing"
            actual = found[table][column.name]
            assert actual in FITTING_TYPES[column.type], (
                f"{domain}.{table}.{column.name}: seed says {column.type}, database has {actual}"
            )
            if "pk" in column.settings:
                assert (table, column.name) in primary, f"{table}.{column.name} is not the key"
            if "unique" in column.settings:
                assert (table, column.name) in unique, f"{table}.{column.name} is not unique"


@pytest.mark.parametrize("domain", DOMAINS)
async def test_money_columns_keep_minor_units(
    domain: str, databases: dict[str, DomainDatabase]
) -> None:
    async with databases[domain].begin() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT table_name, column_name, numeric_scale FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type = 'numeric'"
                )
            )
        ).all()
    # Every ISO 4217 currency has at most 4 minor digits; an unscaled NUMERIC would accept anything.
    assert all(scale is not None and scale >= 4 for _, _, scale in rows), rows
