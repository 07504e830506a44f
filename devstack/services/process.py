"""A child process we start, watch, and stop by its pid."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.logging import get_logger

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A local service could not be started or did not become ready."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # Linux only: if the supervisor dies without cleaning up (SIGKILL), the child gets SIGTERM
    # instead of living on as an orphan holding a port. Best effort elsewhere.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether `url` answers 200 (a readiness probe for services with a health endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a child's log (why it died), empty when there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# Where free_port draws from: below the kernel's ephemeral range (32768 and up by default), where
# outgoing connections take their local ports. A port taken from the ephemeral range can be
# grabbed by one of the stack's own client connections before the service binds it.
FREE_PORT_RANGE = (15000, 28000)
_ports = random.SystemRandom()


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*offsets: int, length: int = 1, host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, with its `length - 1` successors and `port + offset`
    free too (for tests and tools that must not clash with `just up` or with each other).

    A child restarted after a fault must find its port free again, so the port is drawn outside
    the ephemeral range rather than from the kernel's `bind(0)`.
    """
    for _ in range(200):
        port = _ports.randrange(*FREE_PORT_RANGE)
        wanted = [port + i for i in range(length)] + [port + offset for offset in offsets]
        if all(_bindable(p, host) and not port_is_open(host, p) for p in wanted):
            return port
    raise ServiceError("no free ports")


def wait_until(
    check: Callable[[], bool], *, what: str, timeout: float, interval: float = 0.1
) -> None:
    """Poll `check` until it holds or `timeout` seconds pass (then ServiceError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ServiceError(f"{what} not ready after {timeout:.0f}s")


@dataclass
class ManagedProcess:
    """One long-running child: its command line, where it logs, how it is stopped and checked."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    ports: Sequence[tuple[str, int]] = ()
    env: dict[str, str] | None = None
    cwd: Path | None = None
    # Extra Popen arguments, e.g. postgres.drop_privileges(...) to run as another user.
    popen_kwargs: dict[str, Any] = field(default_factory=dict)
    # Run before every spawn, restarts included (e.g. PostgreSQL re-checks its directory's access).
    before_spawn: Callable[[], None] | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    ready_timeout: float = 60.0
    stop_timeout: float = 20.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _stop_requested: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the child and block until it is ready; stop it again if it never gets there."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the child without waiting for it to be ready."""
        if self.before_spawn is not None:
            self.before_spawn()
        for host, port in self.ports:
            if port_is_open(host, port):
                raise ServiceError(
                    f"{self.name}: {host}:{port} is already in use "
                    "(is another `just up` or test run holding it?)"
                )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                **self.popen_kwargs,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        log.info("service.starting", service=self.name, pid=self._proc.pid, log=str(self.log_path))

    def wait_ready(self) -> None:
        """Block until the spawned child is ready; stop it if it dies or never gets there."""
        assert self._proc is not None, "spawn() first"
        try:
            wait_until(self._ready_or_dead, what=self.name, timeout=self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        if not self.running():
            raise ServiceError(
                f"{self.name} exited during start; see {self.log_path}; its last lines:\n"
                + _tail(self.log_path)
            )
        log.info("service.ready", service=self.name, pid=self._proc.pid)

    def _ready_or_dead(self) -> bool:
        if not self.running():
            return True
        return self.ready()

    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        """The exit code once the child has ended."""
        return self._proc.poll() if self._proc else None

    def request_stop(self) -> None:
        """Send the child its stop signal, once, without waiting (stop() waits)."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._stop_requested is proc:
            return
        log.info("service.stopping", service=self.name, pid=proc.pid)
        self._stop_requested = proc
        try:
            os.kill(proc.pid, self.stop_signal)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Ask the child to stop, wait for it, and kill it if it does not."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.request_stop()
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("service.kill", service=self.name, pid=proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.info("service.stopped", service=self.name, pid=proc.pid, returncode=proc.returncode)
