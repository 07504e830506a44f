"""`just up` (python -m devstack): starts everything, refuses a twin, restarts what dies, runs
WORKER_REPLICAS workers per queue, leaves nothing on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from devstack.services.process import free_port, port_is_open
from devstack.services.temporal import temporal_cli
from workers.bootstrap import WORKER_DOMAINS

REPO = Path(__file__).resolve().parents[2]
BANNER_END = "Ctrl-C stops everything."


def _reader(stream: object, lines: queue.Queue[str], record: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        record.append(line)
        lines.put(line)


def _wait_for_line(
    lines: queue.Queue[str], needle: str, timeout: float, process: subprocess.Popen[str]
) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process.poll() is None or not lines.empty()):
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} within {timeout}s:\n{''.join(seen)}")


def _drain(lines: queue.Queue[str]) -> list[str]:
    """What is left to read (once the process has ended and its reader has caught up)."""
    time.sleep(0.5)
    drained = []
    while not lines.empty():
        drained.append(lines.get())
    return drained


def _events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tmp_path.chmod(0o755)
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "PSP_URL": f"http://127.0.0.1:{free_port()}",
        "API_PORT": str(free_port()),
        "WORKER_METRICS_BASE_PORT": str(free_port(length=len(WORKER_DOMAINS))),
        "EMBEDDED_SERVICES": "postgres,temporal,nats,sandbox",
        "LOG_FORMAT": "json",
    }
    yield env
    shutil.rmtree(tmp_path, ignore_errors=True)


def _ports(env: dict[str, str]) -> list[int]:
    return [
        int(env["DATABASE_URL"].rsplit(":", 1)[1]),
        int(env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]),
        int(env["NATS_URL"].rsplit(":", 1)[1]),
        int(env["PSP_URL"].rsplit(":", 1)[1]),
        int(env["API_PORT"]),
    ]


def _up(env: dict[str, str]) -> tuple[subprocess.Popen[str], queue.Queue[str], list[str]]:
    """`python -m devstack`; its output (stdout and the JSON log) to read line by line, and
    every line of it so far."""
    up = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    record: list[str] = []
    threading.Thread(target=_reader, args=(up.stdout, lines, record), daemon=True).start()
    return up, lines, record


@pytest.mark.slow
def test_up_serves_everything_refuses_a_twin_and_stops_clean(stack_env: dict[str, str]) -> None:
    up, lines, _ = _up(stack_env)
    try:
        output = "".join(_wait_for_line(lines, BANNER_END, timeout=120, process=up))
        for url_part in (
            stack_env["DATABASE_URL"],
            stack_env["TEMPORAL_ADDRESS"],
            stack_env["NATS_URL"],
        ):
            assert url_part in output
        children = psutil.Process(up.pid).children(recursive=True)
        assert {c.name() for c in children} >= {"postgres", "temporal", "nats-server"}
        commands = [" ".join(c.cmdline()) for c in children]
        for domain in WORKER_DOMAINS:
            assert any(cmd.endswith(f"-m workers {domain}") for cmd in commands), domain
        assert any(cmd.endswith("-m sandbox") for cmd in commands)
        assert any(cmd.endswith("-m api") for cmd in commands)
        health = httpx.get(f"http://127.0.0.1:{stack_env['API_PORT']}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["checks"]["queue:payments"] == "ok"

        # The README's curl walkthrough, pasted into a shell, ends with a completed checkout.
        readme = (REPO / "README.md").read_text()
        script = readme.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
        script = script.strip().removeprefix("```bash").removesuffix("```")
        walked = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**stack_env, "API": f"http://127.0.0.1:{stack_env['API_PORT']}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert walked.returncode == 0, walked.stderr + walked.stdout
        last = json.loads(walked.stdout.strip().splitlines()[-1])
        assert last["status"] == "completed", last
        assert last["order"]["total_amount"] == "59.80"

        # Metrics: the API's own counters, and the checkout worker's (Temporal runtime + ours).
        api_metrics = httpx.get(f"http://127.0.0.1:{stack_env['API_PORT']}/metrics/").text
        assert 'checkout_starts_total{outcome="started"} 1.0' in api_metrics
        worker_metrics = httpx.get(
            f"http://127.0.0.1:{stack_env['WORKER_METRICS_BASE_PORT']}/metrics"
        ).text
        assert "checkouts_started" in worker_metrics
        assert 'status="completed"' in worker_metrics
        assert "checkout_step_duration" in worker_metrics
        # Each domain worker holds its own database's URL and no other.
        for child in children:
            cmd = " ".join(child.cmdline())
            if "-m workers " in cmd:
                domains = cmd.split("-m workers ", 1)[1].removeprefix("relay ").split()
                urls = {k for k in child.environ() if k.endswith("DATABASE_URL")}
                assert urls == {f"{d.upper()}_DATABASE_URL" for d in domains}, (domains, urls)
        assert all(port_is_open("127.0.0.1", port) for port in _ports(stack_env))

        listed = subprocess.run(
            [
                temporal_cli(),
                "operator",
                "search-attribute",
                "list",
                "--address",
                stack_env["TEMPORAL_ADDRESS"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for attribute in (
            "CheckoutStatus",
            "CheckoutStep",
            "OrderNumber",
            "CustomerId",
            "ReturnStatus",
        ):
            assert attribute in listed

        twin = subprocess.run(
            [sys.executable, "-m", "devstack"],
            cwd=REPO,
            env=stack_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert twin.returncode == 2
        assert "already running" in twin.stderr
        assert up.poll() is None, "the twin must not disturb the running stack"

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"orphans left behind: {alive}"
    assert not any(port_is_open("127.0.0.1", port) for port in _ports(stack_env))


def _child_pid(up: subprocess.Popen[str], matches: Callable[[psutil.Process], bool]) -> int:
    """The pid of the one direct child of `up` that `matches`."""
    found = [child.pid for child in psutil.Process(up.pid).children() if matches(child)]
    assert len(found) == 1, found
    return found[0]


def _named(name: str) -> Callable[[psutil.Process], bool]:
    return lambda process: bool(process.name() == name)


def _healthy(env: dict[str, str], timeout: float = 30) -> None:
    """Wait until /healthz answers 200 (every dependency and a poller on every queue)."""
    url = f"http://127.0.0.1:{env['API_PORT']}/healthz"
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            last = repr(exc)
        else:
            if answer.status_code == 200:
                return
            last = answer.text
        time.sleep(0.2)
    raise AssertionError(f"/healthz not 200 within {timeout}s: {last}")


def _kill_and_see_restarted(
    up: subprocess.Popen[str], lines: queue.Queue[str], pid: int, child: str
) -> dict[str, Any]:
    """SIGKILL `pid` and wait for the supervisor's `devstack.child.restarted` about it."""
    os.kill(pid, signal.SIGKILL)
    seen = _wait_for_line(lines, f'"previous_pid": {pid},', timeout=60, process=up)
    events = _events(seen)
    exited = next(e for e in events if e["event"] == "devstack.child.exited" and e["pid"] == pid)
    assert exited["signal"] == "SIGKILL"
    restarted = events[-1]
    assert restarted["event"] == "devstack.child.restarted"
    assert restarted["child"] == exited["child"]
    assert restarted["child"].startswith(child)
    assert restarted["pid"] != pid
    return restarted


@pytest.mark.slow
def test_up_restarts_what_dies_and_runs_worker_replicas(stack_env: dict[str, str]) -> None:
    """WORKER_REPLICAS=2: two processes per queue; a SIGKILLed worker, NATS, Temporal or
    PostgreSQL is restarted on its own state and the stack serves again; SIGTERM still ends it."""
    env = {
        **stack_env,
        "WORKER_REPLICAS": "2",
        "WORKER_METRICS_BASE_PORT": str(free_port(length=2 * len(WORKER_DOMAINS))),
    }
    temporal = [temporal_cli(), "workflow", "--address", env["TEMPORAL_ADDRESS"]]
    up, lines, record = _up(env)
    children: list[psutil.Process] = []
    try:
        _wait_for_line(lines, BANNER_END, timeout=120, process=up)
        workers = [
            child
            for child in psutil.Process(up.pid).children()
            if child.cmdline()[-3:-1] == ["-m", "workers"]
        ]
        for domain in WORKER_DOMAINS:
            replicas = [w for w in workers if w.cmdline()[-1] == domain]
            assert len(replicas) == 2, (domain, replicas)
        # Each replica serves its metrics on its own port.
        assert len({w.environ()["WORKER_METRICS_PORT"] for w in workers}) == len(workers)
        _healthy(env)

        # worker-payments-2: the second replica has the second run of metrics ports.
        port = int(env["WORKER_METRICS_BASE_PORT"]) + len(WORKER_DOMAINS)
        port += WORKER_DOMAINS.index("payments")
        worker = _child_pid(up, lambda c: c.environ().get("WORKER_METRICS_PORT") == str(port))
        restarted = _kill_and_see_restarted(up, lines, worker, "worker-payments-2")
        assert restarted["child"] == "worker-payments-2"
        assert psutil.Process(restarted["pid"]).environ()["WORKER_METRICS_PORT"] == str(port)
        _healthy(env)

        # The services restart on their state: Temporal keeps its workflows (SQLite file under
        # DATA_DIR), PostgreSQL its data directory, NATS its JetStream store.
        subprocess.run(
            [*temporal, "start", "--type", "Nothing", "--task-queue", "nowhere", "-w", "kept"],
            check=True,
            capture_output=True,
        )
        for name in ("nats-server", "temporal", "postgres"):
            pid = _child_pid(up, _named(name))
            _kill_and_see_restarted(up, lines, pid, name.removesuffix("-server"))
            _healthy(env)
        described = subprocess.run(
            [*temporal, "describe", "-w", "kept"], capture_output=True, text=True, check=False
        )
        assert described.returncode == 0, described.stderr
        assert up.poll() is None

        # SIGTERM while a killed worker's replacement is starting: it is stopped, not awaited,
        # nothing else restarts, and every process the stack ever started is gone.
        port -= len(WORKER_DOMAINS)  # worker-payments-1
        worker = _child_pid(up, lambda c: c.environ().get("WORKER_METRICS_PORT") == str(port))
        children = psutil.Process(up.pid).children(recursive=True)
        os.kill(worker, signal.SIGKILL)
        _wait_for_line(lines, '"service": "worker-payments-1"', timeout=10, process=up)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    after_sigterm = _events(_drain(lines))
    assert "devstack.child.restarted" not in {e["event"] for e in after_sigterm}, after_sigterm
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"orphans left behind: {alive}"
    started = [e["pid"] for e in _events(record) if e["event"] == "service.starting"]
    assert [pid for pid in started if _running(pid)] == [], "a child outlived the stack"
    assert not any(port_is_open("127.0.0.1", port) for port in _ports(env))
