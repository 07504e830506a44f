"""Session fixtures: real PostgreSQL, Temporal and NATS on free ports in a temporary directory.

Nothing here touches the developer's `.data/` or the ports of a running `just up`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db.migrate import migrate
from devstack.services.nats import nats_process
from devstack.services.postgres import postgres_process
from devstack.services.process import ManagedProcess, free_port
from devstack.services.temporal import DevServerConfig, temporal_process
from kit.db import DomainDatabase
from kit.settings import DOMAINS, Settings, get_settings

HOST = "127.0.0.1"
# The saga platform (sandbox, workers, webhook relay) as fixtures for every test package.
pytest_plugins = ["tests.platform"]
# A second namespace for tests that run their own worker processes beside the in-process ones.
ISOLATED_NAMESPACE = "isolated"


@dataclass(frozen=True)
class Service:
    """A running test service and the URL clients use."""

    url: str
    process: ManagedProcess


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    """A private directory for the session's service data and logs (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="checkout-tests-"))
    path.chmod(0o755)  # PostgreSQL runs as an unprivileged user when tests run as root
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(process: ManagedProcess, request: pytest.FixtureRequest) -> None:
    request.addfinalizer(process.stop)
    process.start()


@pytest.fixture(scope="session")
def postgres(work_dir: Path, request: pytest.FixtureRequest) -> Service:
    """A throw-away PostgreSQL server; DATABASE_URL points at it for the whole session."""
    port = free_port()
    process = postgres_process(
        work_dir / "postgres", host=HOST, port=port, log_dir=work_dir / "logs", durable=False
    )
    _run(process, request)
    url = f"postgresql://postgres@{HOST}:{port}"
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    return Service(url, process)


@pytest.fixture(scope="session")
def temporal(work_dir: Path, request: pytest.FixtureRequest) -> Service:
    """An in-memory Temporal dev server with the platform's search attributes."""
    address = f"{HOST}:{free_port()}"
    config = DevServerConfig.load().serving(address)
    process = temporal_process(
        config, data_dir=None, log_dir=work_dir / "logs", extra_namespaces=[ISOLATED_NAMESPACE]
    )
    _run(process, request)
    os.environ["TEMPORAL_ADDRESS"] = address
    get_settings.cache_clear()
    return Service(address, process)


@pytest.fixture(scope="session")
def nats(work_dir: Path, request: pytest.FixtureRequest) -> Service:
    """A JetStream-enabled NATS server."""
    port, monitor = free_port(), free_port()
    process = nats_process(
        work_dir / "nats", host=HOST, port=port, monitor_port=monitor, log_dir=work_dir / "logs"
    )
    _run(process, request)
    url = f"nats://{HOST}:{port}"
    os.environ["NATS_URL"] = url
    get_settings.cache_clear()
    return Service(url, process)


@pytest.fixture(scope="session")
def settings(postgres: Service) -> Settings:
    """Settings as the platform's processes would read them, pointed at the test services."""
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    """All ten databases created and upgraded to head, once per session."""
    migrate(settings)
    return settings


@pytest.fixture(scope="session")
async def databases(migrated: Settings) -> AsyncIterator[dict[str, DomainDatabase]]:
    """One DomainDatabase per domain, disposed at the end of the session."""
    dbs = {domain: DomainDatabase.from_settings(domain, migrated) for domain in DOMAINS}
    yield dbs
    await asyncio.gather(*(db.dispose() for db in dbs.values()))
