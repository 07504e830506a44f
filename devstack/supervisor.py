"""Keep the children of `just up` running: restart one that exits, give up on a crash loop.

A child that exits while the stack runs is started again (same command line, same data
directory, same readiness check as at start) after a delay that doubles with each exit and
falls back to the initial delay once the child has stayed up for a while. A child that keeps
exiting is a crash loop: `run()` raises CrashLoop and the caller stops everything.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from devstack.services.process import ManagedProcess, ServiceError
from kit.logging import get_logger

log = get_logger(__name__)

# Restart delays: 0.5 s after the first exit, doubling per exit up to 30 s, so a dependency
# that is briefly down (PostgreSQL still releasing its shared memory after a SIGKILL) is
# retried at once but a broken child does not spin.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
# A child up this long counts as healthy again: its next exit restarts after BACKOFF_INITIAL_S.
STABLE_AFTER_S = 60.0
# A crash loop: more than CRASH_LOOP_RESTARTS exits of one child within CRASH_LOOP_WINDOW_S.
# With the delays above, six exits in a row take about 16 s plus six readiness waits, so a
# child that cannot stay up stops the stack within a minute or so instead of retrying forever.
CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_S = 120.0
# How often the children are looked at.
POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child and when to give up (the module constants by default)."""

    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    stable_after_s: float = STABLE_AFTER_S
    max_restarts: int = CRASH_LOOP_RESTARTS
    window_s: float = CRASH_LOOP_WINDOW_S

    def next_delay(self, previous: float | None) -> float:
        """The delay before the next restart: the initial one after a stable run (`previous`
        None), else twice the previous delay, capped."""
        return self.initial_s if previous is None else min(previous * 2, self.max_s)


class CrashLoop(RuntimeError):
    """A child exited more often than the policy allows; the stack should stop."""


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    process: ManagedProcess
    started_at: float = field(default_factory=time.monotonic)
    # The delay of the last restart; None until the first exit or after a stable run.
    delay: float | None = None
    # When a dead child is due to start again; None while it runs.
    restart_at: float | None = None
    exits: deque[float] = field(default_factory=deque)
    # The pid that exited, for the log line of its replacement (failed attempts in between).
    exited_pid: int | None = None
    # Successful restarts since the stack started (never reset: what an observer counts).
    restarts: int = 0

    @property
    def name(self) -> str:
        """The process's name (`postgres`, `worker-payments-2`, ...)."""
        return self.process.name


def _exit_fields(process: ManagedProcess) -> dict[str, object]:
    """pid and exit code, or the signal's name when a signal ended the child."""
    code = process.returncode()
    if code is not None and code < 0:
        return {"pid": process.pid, "signal": signal.Signals(-code).name}
    return {"pid": process.pid, "exit_code": code}


class Supervisor:
    """The children of one stack, restarted on exit, stopped in the reverse of start order.

    Children are added in groups: one service alone, or the worker processes together. Groups
    stop one after the other, newest first; the members of a group stop at the same time.
    """

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        on_change: Callable[[list[Child]], None] | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.groups: list[list[Child]] = []
        self.stopping = False
        # Told of every start, exit and restart with the children as they are then (read-only
        # introspection, e.g. DATA_DIR/stack.json); its failures never disturb the supervision.
        self.on_change = on_change

    @property
    def children(self) -> list[Child]:
        """Every child, in start order."""
        return [child for group in self.groups for child in group]

    def add(self, *processes: ManagedProcess) -> None:
        """Supervise `processes` as one group (their caller starts them); add before starting,
        so that stop() sees a child that fails half-way through its start."""
        self.groups.append([Child(process) for process in processes])

    def start(self, process: ManagedProcess) -> None:
        """Supervise `process`, start it and wait until it is ready."""
        self.add(process)
        process.start()
        self.changed()

    def changed(self) -> None:
        """Tell `on_change` how the children are now (a child was started, exited, restarted)."""
        if self.on_change is None:
            return
        try:
            self.on_change(self.children)
        except Exception:
            log.exception("devstack.on_change_failed")

    def run(self) -> None:
        """Look after the children until a crash loop (CrashLoop) or an exception from a signal."""
        while not self.stopping:
            self.check()
            time.sleep(POLL_INTERVAL_S)

    def check(self) -> None:
        """One look: note exits, schedule restarts, restart the children that are due."""
        if self.stopping:
            return
        now = time.monotonic()
        due = []
        for child in self.children:
            if child.restart_at is None:
                self._look_at(child, now)
            elif now >= child.restart_at:
                due.append(child)
        self._restart(due)

    def _look_at(self, child: Child, now: float) -> None:
        if child.process.running():
            if now - child.started_at >= self.policy.stable_after_s:
                child.delay = None
            return
        child.exited_pid = child.process.pid
        self._schedule(
            child, "devstack.child.exited", now, uptime_s=round(now - child.started_at, 1)
        )
        self.changed()

    def _schedule(self, child: Child, event: str, now: float, **fields: object) -> None:
        """Count one exit of `child` and set when it starts again (CrashLoop when too many)."""
        child.exits.append(now)
        while child.exits and now - child.exits[0] > self.policy.window_s:
            child.exits.popleft()
        child.delay = self.policy.next_delay(child.delay)
        log.warning(
            event,
            child=child.name,
            **_exit_fields(child.process),
            **fields,
            restart_in_s=child.delay,
        )
        if len(child.exits) > self.policy.max_restarts:
            log.error(
                "devstack.crash_loop",
                child=child.name,
                exits=len(child.exits),
                window_s=self.policy.window_s,
            )
            raise CrashLoop(
                f"{child.name} exited {len(child.exits)} times within "
                f"{self.policy.window_s:.0f}s; see {child.process.log_path}"
            )
        child.restart_at = now + child.delay

    def start_group(self, *processes: ManagedProcess) -> None:
        """Supervise `processes` as one group, start them together and wait for each. One that
        fails its first start is restarted as one that exits later would be (CrashLoop if it
        keeps failing): a hiccup of one worker on a loaded machine does not stop the stack."""
        self.add(*processes)
        for child in self._launch(self.groups[-1], "devstack.child.start_failed"):
            child.started_at = time.monotonic()
        self.changed()

    def _launch(self, children: list[Child], failed: str) -> list[Child]:
        """Spawn `children` together, then wait for each; those that came up (the others are
        scheduled for a restart, logged as `failed`)."""
        spawned = []
        for child in children:
            try:
                child.process.spawn()
            except (ServiceError, OSError) as exc:
                self._schedule(child, failed, time.monotonic(), error=str(exc))
                continue
            spawned.append(child)
        up = []
        for child in spawned:
            try:
                child.process.wait_ready()
            except ServiceError as exc:
                self._schedule(child, failed, time.monotonic(), error=str(exc))
                continue
            up.append(child)
        return up

    def _restart(self, due: list[Child]) -> None:
        """Start the due children together, then wait for each as at start."""
        for child in self._launch(due, "devstack.child.restart_failed"):
            child.started_at, child.restart_at = time.monotonic(), None
            child.restarts += 1
            self.changed()
            log.info(
                "devstack.child.restarted",
                child=child.name,
                pid=child.process.pid,
                previous_pid=child.exited_pid,
                restarts=len(child.exits),
            )

    def stop(self) -> None:
        """Stop every child by its pid, newest group first; nothing is restarted from now on."""
        self.stopping = True
        for group in reversed(self.groups):
            for child in group:
                child.process.request_stop()
            for child in group:
                try:
                    child.process.stop()
                except Exception:
                    log.exception("stack.stop_failed", service=child.name)
