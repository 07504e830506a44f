"""deploy/probes/worker_probe.py against a real HTTP endpoint serving Temporal-style metrics."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

PROBE = Path(__file__).resolve().parents[2] / "deploy" / "probes" / "worker_probe.py"

# As the Temporal runtime prints them (checked against temporalio's Prometheus exporter).
POLLING = (
    "# HELP temporal_num_pollers Current number of active pollers per queue type\n"
    "# TYPE temporal_num_pollers gauge\n"
    'temporal_num_pollers{namespace="checkout",poller_type="activity_task",'
    'service_name="temporal-core-sdk",task_queue="payments"} 5\n'
    "# TYPE outbox_backlog gauge\n"
    'outbox_backlog{domain="payments",service_name="temporal-core-sdk"} 0\n'
)
NOT_POLLING = POLLING.replace("} 5", "} 0")


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("worker_probe", PROBE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load_probe()


class Metrics:
    """A metrics endpoint on a free loopback port whose body the test sets."""

    def __init__(self) -> None:
        self.body = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = owner.body.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    endpoint = Metrics()
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_live_when_the_endpoint_answers(metrics: Metrics) -> None:
    metrics.body = NOT_POLLING
    assert probe.main(["live", f"--port={metrics.port}"]) == 0


def test_ready_only_with_a_poller_on_its_own_queue(metrics: Metrics) -> None:
    metrics.body = POLLING
    ready = ["ready", f"--port={metrics.port}", "--task-queue=payments", "--relay=payments"]
    assert probe.main(ready) == 0
    assert probe.main(["ready", f"--port={metrics.port}", "--task-queue=shipping"]) == 1
    metrics.body = NOT_POLLING
    assert probe.main(ready) == 1


def test_ready_only_once_the_relay_read_its_outbox(metrics: Metrics) -> None:
    metrics.body = POLLING
    assert probe.main(["ready", f"--port={metrics.port}", "--relay=payments"]) == 0
    assert probe.main(["ready", f"--port={metrics.port}", "--relay=accounts"]) == 1


def test_nothing_listening_or_no_port_is_a_failure(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = metrics.port
    metrics.server.shutdown()
    metrics.server.server_close()
    assert probe.main(["live", f"--port={port}"]) == 1
    monkeypatch.delenv("WORKER_METRICS_PORT", raising=False)
    assert probe.main(["live"]) == 1


def test_the_port_comes_from_the_environment(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics.body = POLLING
    monkeypatch.setenv("WORKER_METRICS_PORT", str(metrics.port))
    assert probe.main(["ready", "--task-queue=payments"]) == 0


def test_parser_reads_labels_and_skips_comments() -> None:
    samples = list(probe.samples(POLLING + "garbage line\nname_only_no_value\n"))
    assert [name for name, _labels, _value in samples] == ["temporal_num_pollers", "outbox_backlog"]
    assert samples[0][1]["task_queue"] == "payments"
    assert samples[0][2] == 5.0


def test_a_versioned_worker_is_ready_only_while_its_version_is_current(metrics: Metrics) -> None:
    gauge = (
        "# TYPE worker_version_current gauge\n"
        'worker_version_current{build_id="0.2.0",deployment="checkout-platform-checkout"} '
    )
    ready = ["ready", f"--port={metrics.port}", "--task-queue=payments", "--current-version"]
    metrics.body = POLLING
    assert probe.main(ready) == 1  # versioning off, or the gauge not set yet
    metrics.body = POLLING + gauge + "0\n"
    assert probe.main(ready) == 1  # not promoted, or replaced by a newer release
    metrics.body = POLLING + gauge + "1\n"
    assert probe.main(ready) == 0
    metrics.body = NOT_POLLING + gauge + "1\n"
    assert probe.main(ready) == 1
