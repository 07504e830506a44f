"""Create missing domain databases and run Alembic over all of them: `python -m db.migrate`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from alembic import command
from alembic.config import Config

from kit.logging import configure_logging, get_logger
from kit.settings import DOMAINS, ProcessRole, Settings, database_url_for, get_settings

log = get_logger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config(domain: str, settings: Settings) -> Config:
    """The Alembic config of one domain, pointed at its database."""
    config = Config(str(ALEMBIC_INI), ini_section=domain)
    # ConfigParser interpolates '%': a password containing one must survive.
    config.set_main_option(
        "sqlalchemy.url", settings.domain_database_url(domain).replace("%", "%%")
    )
    return config


async def create_missing_databases(
    settings: Settings, domains: Iterable[str] = DOMAINS
) -> list[str]:
    """CREATE DATABASE for each domain database that does not exist yet; return those created."""
    created: list[str] = []
    for domain in domains:
        url = settings.domain_database_url(domain)
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(database_url_for(url, "postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                # Identifiers cannot be bound as parameters; quote them as PostgreSQL does.
                quoted = '"' + name.replace('"', '""') + '"'
                try:
                    await conn.execute(f"CREATE DATABASE {quoted}")
                except asyncpg.DuplicateDatabaseError:
                    pass  # another process created it between our check and our CREATE
                else:
                    created.append(name)
        finally:
            await conn.close()
    if created:
        log.info("db.created", databases=created)
    return created


def upgrade(settings: Settings, domains: Iterable[str] = DOMAINS, revision: str = "head") -> None:
    """Upgrade each domain database to `revision`."""
    for domain in domains:
        command.upgrade(alembic_config(domain, settings), revision)
        log.info("db.upgraded", domain=domain, revision=revision)


def downgrade(settings: Settings, domains: Iterable[str] = DOMAINS, revision: str = "base") -> None:
    """Downgrade each domain database to `revision`."""
    for domain in domains:
        command.downgrade(alembic_config(domain, settings), revision)
        log.info("db.downgraded", domain=domain, revision=revision)


def migrate(settings: Settings, domains: Iterable[str] = DOMAINS) -> None:
    """Create what is missing, then upgrade everything to head (what `just migrate` does)."""
    selected = list(domains)
    asyncio.run(create_missing_databases(settings, selected))
    upgrade(settings, selected)


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m db.migrate [--domain D ...] [upgrade|downgrade] [REVISION]`."""
    parser = argparse.ArgumentParser(prog="python -m db.migrate", description=__doc__)
    parser.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("revision", nargs="?", default=None)
    parser.add_argument("--domain", action="append", choices=DOMAINS, dest="domains")
    args = parser.parse_args(argv)
    settings = get_settings().validate_for(ProcessRole("migrate"))
    configure_logging(settings)
    domains = args.domains or list(DOMAINS)
    if args.action == "upgrade":
        asyncio.run(create_missing_databases(settings, domains))
        upgrade(settings, domains, args.revision or "head")
    else:
        downgrade(settings, domains, args.revision or "base")


if __name__ == "__main__":
    main()
