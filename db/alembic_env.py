"""The body of every `db/migrations/<domain>/env.py`: one database, async driver, our metadata."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.metadata import metadata_for
from kit.settings import async_driver_url, get_settings


def _url(domain: str) -> str:
    return context.config.get_main_option("sqlalchemy.url") or get_settings().domain_database_url(
        domain
    )


def _configure(domain: str, **kwargs: object) -> None:
    context.configure(
        target_metadata=metadata_for(domain),
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _run_sync(connection: Connection, domain: str) -> None:
    _configure(domain, connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(domain: str) -> None:
    engine = create_async_engine(async_driver_url(_url(domain)), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, domain)
    finally:
        await engine.dispose()


def run(domain: str) -> None:
    """Migrate `domain` online, or print SQL (`alembic --name <domain> upgrade head --sql`)."""
    if context.is_offline_mode():
        _configure(domain, url=async_driver_url(_url(domain)), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_online(domain))
