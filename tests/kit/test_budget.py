"""The connection budget each process checks at start, against a real PostgreSQL server: a role's
CONNECTION LIMIT, what the server leaves to ordinary roles, the fleet's worst case."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text

from devstack.services.process import free_port
from kit.budget import (
    ConnectionBudgetExceeded,
    check_connection_budget,
    process_connections,
    server_limits,
)
from kit.db import DomainDatabase
from kit.settings import Settings

DOMAIN = "accounts"


def _as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def limited_role(databases: dict[str, DomainDatabase]) -> AsyncIterator[str]:
    """A login role allowed three connections."""
    role = f"budget_{uuid.uuid4().hex[:8]}"
    async with databases[DOMAIN].begin() as session:
        await session.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3"))
    yield role
    async with databases[DOMAIN].begin() as session:
        await session.execute(text(f"DROP ROLE {role}"))


async def test_a_process_within_every_limit_starts(
    migrated: Settings, databases: dict[str, DomainDatabase]
) -> None:
    limits = await server_limits(databases[DOMAIN])
    assert 0 < limits.available < limits.max_connections
    fits = migrated.updated(database={"fleet_connections": limits.available})
    ceiling = process_connections(fits, pools=2, listen=1)
    assert ceiling == 2 * (fits.database.pool_size + fits.database.max_overflow) + 1
    assert await check_connection_budget({DOMAIN: ceiling}, fits, "a worker process") == []


async def test_a_process_over_its_roles_connection_limit_does_not_start(
    migrated: Settings, limited_role: str
) -> None:
    url = _as_role(migrated.domain_database_url(DOMAIN), limited_role)
    settings = migrated.updated(
        database={"domain_urls": {DOMAIN: url}, "pool_size": 2, "max_overflow": 2}
    )
    with pytest.raises(ConnectionBudgetExceeded, match="CONNECTION LIMIT is 3") as raised:
        await check_connection_budget(
            {DOMAIN: process_connections(settings, pools=1)}, settings, "the API"
        )
    assert limited_role in str(raised.value)
    assert "DB_POOL_SIZE" in str(raised.value)

    one = settings.updated(database={"pool_size": 1, "max_overflow": 2})
    assert await check_connection_budget({DOMAIN: process_connections(one, 1)}, one, "API") == []


async def test_a_fleet_over_the_servers_connections_is_refused_warned_or_ignored(
    migrated: Settings, databases: dict[str, DomainDatabase]
) -> None:
    available = (await server_limits(databases[DOMAIN])).available
    ceilings = {DOMAIN: 1, "orders": 1}
    over = migrated.updated(database={"fleet_connections": available + 1})
    with pytest.raises(ConnectionBudgetExceeded, match="DB_FLEET_CONNECTIONS") as raised:
        await check_connection_budget(ceilings, over, "a relay process")
    assert str(raised.value).count("DB_FLEET_CONNECTIONS") == 1  # one server, said once

    warned = over.updated(database={"budget_check": "warn"})
    problems = await check_connection_budget(ceilings, warned, "a relay process")
    assert len(problems) == 1
    assert f"exceeds the {available} connections" in problems[0]

    off = over.updated(database={"budget_check": "off"})
    assert await check_connection_budget(ceilings, off, "a relay process") == []


async def test_an_unreachable_database_is_not_a_budget_problem(migrated: Settings) -> None:
    """A process restarted while PostgreSQL is down must start (its work retries), not
    crash-loop on the check."""
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/{DOMAIN}"
    settings = migrated.updated(
        database={"domain_urls": {DOMAIN: down}, "fleet_connections": 10**6}
    )
    assert await check_connection_budget({DOMAIN: 10**6}, settings, "the API") == []


async def test_a_process_whose_pools_together_overfill_one_server_does_not_start(
    migrated: Settings, databases: dict[str, DomainDatabase]
) -> None:
    """Each database alone fits; the API's pools on one server together do not."""
    available = (await server_limits(databases[DOMAIN])).available
    each = available // 2 + 1
    ceilings = {DOMAIN: each, "orders": each}
    with pytest.raises(ConnectionBudgetExceeded, match="in all to the PostgreSQL server") as raised:
        await check_connection_budget(ceilings, migrated, "the API")
    assert f"{2 * each} connections" in str(raised.value)
    assert "accounts, orders" in str(raised.value)
    assert await check_connection_budget({DOMAIN: each}, migrated, "the API") == []
