"""The supervisor's restart policy, on small `python -c` children (real processes, no stack)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from devstack.services.process import ManagedProcess
from devstack.supervisor import Child, CrashLoop, RestartPolicy, Supervisor

# Small delays so a test sees several restarts in a second or two.
FAST = RestartPolicy(initial_s=0.05, max_s=0.4, stable_after_s=30, max_restarts=20, window_s=30)

SLEEPS = "import time; time.sleep(60)"
# Up long enough to be found ready, then gone: a child that keeps crashing.
CRASHES = "import time; time.sleep(0.2); raise SystemExit(3)"


def _child(
    tmp_path: Path, name: str, code: str, ready: Callable[[], bool] = lambda: True
) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-c", code],
        log_path=tmp_path / f"{name}.log",
        ready=ready,
        stop_timeout=5,
    )


@pytest.fixture
def started() -> Iterator[list[Supervisor]]:
    """Supervisors a test starts; stopped afterwards, so no child outlives the test."""
    supervisors: list[Supervisor] = []
    yield supervisors
    for supervisor in supervisors:
        supervisor.stop()


def _supervise(
    started: list[Supervisor], policy: RestartPolicy, *processes: ManagedProcess
) -> Supervisor:
    supervisor = Supervisor(policy)
    started.append(supervisor)
    for process in processes:
        supervisor.start(process)
    return supervisor


def _check_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached"
        supervisor.check()
        time.sleep(0.02)


def _kill(child: Child) -> int:
    pid = child.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(child: Child, killed: int) -> Callable[[], bool]:
    return lambda: child.process.running() and child.process.pid != killed


def test_a_killed_child_is_restarted_and_its_neighbours_are_left_alone(
    tmp_path: Path, started: list[Supervisor]
) -> None:
    supervisor = _supervise(
        started, FAST, _child(tmp_path, "a", SLEEPS), _child(tmp_path, "b", SLEEPS)
    )
    a, b = supervisor.children
    b_pid = b.process.pid
    killed = _kill(a)

    _check_until(supervisor, _restarted(a, killed))

    assert a.process.pid != killed
    assert len(a.exits) == 1
    assert a.delay == FAST.initial_s
    assert b.process.pid == b_pid
    assert b.process.running()
    assert not b.exits


def test_restart_delays_double_up_to_the_cap_and_reset_after_a_stable_run(
    tmp_path: Path, started: list[Supervisor]
) -> None:
    policy = RestartPolicy(
        initial_s=0.05, max_s=0.2, stable_after_s=1.0, max_restarts=20, window_s=30
    )
    supervisor = _supervise(started, policy, _child(tmp_path, "a", SLEEPS))
    (a,) = supervisor.children

    delays, last_exit = [], time.monotonic()
    for _ in range(4):
        killed = _kill(a)
        _check_until(supervisor, _restarted(a, killed))
        delays.append(a.delay)
        # The restart waited at least the delay it was given.
        assert a.started_at - last_exit >= a.delay * 0.9  # type: ignore[operator]
        last_exit = time.monotonic()
    assert delays == [0.05, 0.1, 0.2, 0.2]

    # Up longer than stable_after_s: the next exit starts again from the initial delay.
    _check_until(supervisor, lambda: a.delay is None, timeout=3)
    killed = _kill(a)
    _check_until(supervisor, _restarted(a, killed))
    assert a.delay == 0.05


def test_a_crash_loop_gives_up_and_stop_leaves_nothing(
    tmp_path: Path, started: list[Supervisor]
) -> None:
    policy = RestartPolicy(
        initial_s=0.05, max_s=0.1, stable_after_s=30, max_restarts=3, window_s=30
    )
    supervisor = _supervise(
        started, policy, _child(tmp_path, "steady", SLEEPS), _child(tmp_path, "flaky", CRASHES)
    )
    steady, flaky = supervisor.children
    pids = {steady.process.pid}

    began = time.monotonic()
    with pytest.raises(CrashLoop, match="flaky exited 4 times"):
        supervisor.run()
    assert time.monotonic() - began < 10
    assert len(flaky.exits) == 4  # three restarts allowed, the fourth exit gives up

    supervisor.stop()
    assert not steady.process.running()
    assert not flaky.process.running()
    assert not any(psutil.pid_exists(pid) for pid in pids if pid is not None)


def _recording(process: ManagedProcess, stopped: list[str]) -> Callable[[], None]:
    stop = process.stop

    def record_then_stop() -> None:
        stopped.append(process.name)
        stop()

    return record_then_stop


def test_after_stop_nothing_is_restarted(tmp_path: Path, started: list[Supervisor]) -> None:
    supervisor = _supervise(
        started, FAST, _child(tmp_path, "a", SLEEPS), _child(tmp_path, "b", SLEEPS)
    )
    pids = [child.process.pid for child in supervisor.children]
    stopped: list[str] = []
    for child in supervisor.children:
        child.process.stop = _recording(child.process, stopped)  # type: ignore[method-assign]

    supervisor.stop()
    assert stopped == ["b", "a"]  # newest first
    supervisor.check()
    time.sleep(FAST.initial_s * 2)
    supervisor.check()
    supervisor.run()  # returns at once: the supervisor is stopping

    assert [child.process.pid for child in supervisor.children] == pids
    assert all(not child.process.running() for child in supervisor.children)
    assert all(not child.exits for child in supervisor.children)
    assert all(child.process.returncode() == -signal.SIGTERM for child in supervisor.children)


def test_a_restart_that_fails_to_start_counts_and_is_retried(
    tmp_path: Path, started: list[Supervisor]
) -> None:
    flag = tmp_path / "broken"
    # While `broken` exists (a dependency that is still down) it exits before it is ready.
    code = f"import os, sys, time; os.path.exists({str(flag)!r}) and sys.exit(1); time.sleep(60)"
    supervisor = _supervise(started, FAST, _child(tmp_path, "a", code, lambda: not flag.exists()))
    (a,) = supervisor.children
    flag.touch()
    killed = _kill(a)

    _check_until(supervisor, lambda: len(a.exits) >= 3)
    assert a.restart_at is not None  # still waiting to try again
    flag.unlink()
    _check_until(supervisor, lambda: a.process.running() and a.restart_at is None)
    assert a.process.pid != killed
    assert a.exited_pid == killed  # what `devstack.child.restarted` names as previous_pid


def test_a_group_member_that_fails_its_first_start_is_retried_and_the_rest_run(
    tmp_path: Path, started: list[Supervisor]
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    code = f"import os, sys, time; os.path.exists({str(flag)!r}) and sys.exit(1); time.sleep(60)"
    supervisor = Supervisor(FAST)
    started.append(supervisor)
    supervisor.start_group(
        _child(tmp_path, "a", code, lambda: not flag.exists()), _child(tmp_path, "b", SLEEPS)
    )  # no ServiceError: the stack goes on starting
    a, b = supervisor.children
    assert b.process.running()
    assert len(a.exits) == 1
    assert a.restart_at is not None
    flag.unlink()
    _check_until(supervisor, lambda: a.process.running() and a.restart_at is None)
    assert a.restarts == 1


def test_a_group_stops_together(tmp_path: Path, started: list[Supervisor]) -> None:
    # Each takes a second to stop: together about one second, one after the other three.
    slow = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1), sys.exit(0)))\n"
        "time.sleep(60)"
    )
    supervisor = Supervisor(FAST)
    started.append(supervisor)
    group = [_child(tmp_path, f"w{i}", slow) for i in range(3)]
    supervisor.add(*group)
    for process in group:
        process.start()
    time.sleep(0.5)  # let the children install their handlers

    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 2.5
    assert all(process.returncode() == 0 for process in group)
