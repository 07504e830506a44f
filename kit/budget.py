"""The PostgreSQL connection budget, checked by every process when it starts.

A process may hold, per domain database, `pools * (DB_POOL_SIZE + DB_MAX_OVERFLOW)` pooled
connections plus its LISTEN connections. At start it asks each database's server what it allows
and compares:

- its own ceiling against the role's `CONNECTION LIMIT` (`pg_roles.rolconnlimit`) and against
  what the server leaves to ordinary roles (`max_connections` less `superuser_reserved_connections`
  and, from PostgreSQL 16, `reserved_connections`): one process alone must fit;
- `DB_FLEET_CONNECTIONS`, the deployment's worst case on a server (every Deployment at its maximum
  replica count plus its rolling-update surge, docs/deployment.md "Connection budget", computed
  from the manifests by tests/deploy), against what the server leaves.

Over budget, `DB_BUDGET_CHECK=enforce` (the default) stops the process with a message naming the
database, the figures and the setting to change: a fleet that would exhaust `max_connections`
under load fails its rollout instead of failing checkouts at the worst moment. `warn` logs the
same and goes on; `off` skips the check (behind a pooler, whose own limits apply). A database
that cannot be reached at start is not a budget problem: the check is skipped with a warning and
the process starts (its work retries until the database is back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import text

from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.settings import ConfigurationError, Settings

log = get_logger(__name__)

_LIMITS = text(
    """
    SELECT current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int
             + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
           (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS role_limit,
           current_user AS role
    """
)


class ConnectionBudgetExceeded(ConfigurationError):
    """The configured pools and replicas can open more connections than a server allows."""


@dataclass(frozen=True)
class ServerLimits:
    """What one database's server allows."""

    max_connections: int
    reserved: int
    role: str
    # The role's CONNECTION LIMIT; None when unlimited (-1).
    role_limit: int | None

    @property
    def available(self) -> int:
        """Connections left to ordinary roles."""
        return self.max_connections - self.reserved


def process_connections(settings: Settings, pools: int, listen: int = 0) -> int:
    """The most connections one process opens to one database: its pools, its LISTENs."""
    database = settings.database
    return pools * (database.pool_size + database.max_overflow) + listen


async def server_limits(db: DomainDatabase) -> ServerLimits:
    """Ask the database's server."""
    async with db.begin() as session:
        row = (await session.execute(_LIMITS)).one()
    role_limit = int(row.role_limit) if row.role_limit is not None else -1
    return ServerLimits(
        max_connections=int(row.max_connections),
        reserved=int(row.reserved),
        role=str(row.role),
        role_limit=None if role_limit < 0 else role_limit,
    )


async def _limits_of(domain: str, settings: Settings) -> ServerLimits:
    """One connection, just for the question (the process's pools are not open yet)."""
    db = DomainDatabase(
        domain,
        settings.domain_database_url(domain),
        pool_size=1,
        max_overflow=0,
        pgbouncer=settings.database.pgbouncer,
        role="budget",
    )
    try:
        return await server_limits(db)
    finally:
        await db.dispose()


def _server(domain: str, settings: Settings) -> tuple[str, int]:
    """The host and port of a domain's database server."""
    url = urlsplit(settings.domain_database_url(domain))
    return url.hostname or "localhost", url.port or 5432


def problems(
    domain: str, ceiling: int, limits: ServerLimits, fleet: int | None, process: str
) -> list[str]:
    """Why `ceiling` connections from this process (and `fleet` on the server) do not fit."""
    found = []
    if limits.role_limit is not None and ceiling > limits.role_limit:
        found.append(
            f"{process} alone may open {ceiling} connections to the {domain} database as role "
            f"{limits.role!r}, whose CONNECTION LIMIT is {limits.role_limit}: lower DB_POOL_SIZE "
            "or DB_MAX_OVERFLOW, or raise the role's limit"
        )
    if ceiling > limits.available:
        found.append(
            f"{process} alone may open {ceiling} connections to the {domain} database's server, "
            f"which leaves {limits.available} of max_connections {limits.max_connections} to "
            "ordinary roles: lower DB_POOL_SIZE or DB_MAX_OVERFLOW"
        )
    if fleet is not None and fleet > limits.available:
        found.append(
            f"DB_FLEET_CONNECTIONS {fleet} (every process at its maximum replicas) exceeds the "
            f"{limits.available} connections its PostgreSQL server leaves to ordinary roles "
            f"(max_connections {limits.max_connections}): lower the maximum replicas or the "
            "pools, put PgBouncer in front, or raise max_connections"
        )
    return found


async def check_connection_budget(
    ceilings: Mapping[str, int], settings: Settings, process: str
) -> list[str]:
    """Check each database's budget (`ceilings`: this process's connections per domain, e.g.
    `process_connections(settings, pools=2, listen=1)`); the problems found. Raises
    `ConnectionBudgetExceeded` over budget when enforced."""
    mode = settings.database.budget_check
    if mode == "off":
        return []
    fleet = settings.database.fleet_connections
    found: list[str] = []
    # Per server (host, port): this process's connections to all its databases there.
    servers: dict[tuple[str, int], tuple[list[str], int, ServerLimits]] = {}
    for domain, ceiling in ceilings.items():
        try:
            limits = await _limits_of(domain, settings)
        except Exception as exc:
            log.warning("db.budget_unchecked", domain=domain, error_type=type(exc).__name__)
            continue
        found += [p for p in problems(domain, ceiling, limits, fleet, process) if p not in found]
        server = _server(domain, settings)
        domains, total, _ = servers.get(server, ([], 0, limits))
        servers[server] = ([*domains, domain], total + ceiling, limits)
        log.info(
            "db.budget",
            domain=domain,
            process_connections=ceiling,
            fleet_connections=fleet,
            available=limits.available,
            role_limit=limits.role_limit,
        )
    for (host, port), (domains, total, limits) in servers.items():
        if len(domains) > 1 and total > limits.available:
            found.append(
                f"{process} may open {total} connections in all to the PostgreSQL server at "
                f"{host}:{port} ({', '.join(domains)}), which leaves {limits.available} to "
                "ordinary roles: lower DB_POOL_SIZE or DB_MAX_OVERFLOW, or spread the databases"
            )
    for problem in found:
        log.error("db.budget_exceeded", problem=problem, mode=mode)
    if found and mode == "enforce":
        raise ConnectionBudgetExceeded("; ".join(found))
    return found
