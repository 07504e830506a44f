"""Kubernetes exec probes for `python -m workers` processes, read from their own metrics endpoint.

A worker process serves Temporal's runtime metrics (and the platform's, recorded through the same
meter) on 127.0.0.1:WORKER_METRICS_PORT. An exec probe runs inside the container, so it reaches
that loopback address; an httpGet or tcpSocket probe from the kubelet could not.

    worker_probe.py live
        The metrics endpoint answers. No dependency is checked: a PostgreSQL, NATS or Temporal
        outage must not make Kubernetes restart every worker (the process reconnects by itself).
    worker_probe.py ready [--task-queue QUEUE] [--relay DOMAIN ...] [--current-version]
        Live, and Temporal's SDK reports at least one active poller on QUEUE
        (`temporal_num_pollers{task_queue=QUEUE} > 0`), and each relay has read its outbox at
        least once (its `outbox_backlog{domain=DOMAIN}` gauge exists: it is first set after the
        relay declared its stream on NATS and queried its database). With --current-version
        (versioned workflow workers), also: the process's Worker Deployment version is the
        current one (`worker_version_current == 1`, workers/versioning.py), so that a rolling
        update stops while a new release's version is not promoted.

Exit status 0 when the condition holds, 1 otherwise (with the reason on stderr). The standard
library only, so the probe starts in milliseconds and never imports the platform (`python -I -S`).

Limits, honestly: the metrics endpoint is served by Temporal's Rust core thread, so `live` proves
that the process and its runtime are up, not that the Python event loop is responsive. A worker
health endpoint with an event-loop heartbeat is a follow-up (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence

TIMEOUT_S = 3.0
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def samples(text: str) -> Iterator[Sample]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = {m["key"]: m["value"] for m in _LABEL.finditer(match["labels"] or "")}
        try:
            value = float(match["value"])
        except ValueError:
            continue
        yield match["name"], labels, value


def unready_reasons(
    text: str,
    task_queue: str | None = None,
    relays: Iterable[str] = (),
    current_version: bool = False,
) -> list[str]:
    """What keeps a worker from being ready, given its metrics (empty: ready)."""
    parsed = list(samples(text))
    reasons = []
    if current_version and not any(
        name == "worker_version_current" and value == 1 for name, _labels, value in parsed
    ):
        reasons.append("this process's Worker Deployment version is not the current one")
    if task_queue is not None:
        pollers = sum(
            value
            for name, labels, value in parsed
            if name == "temporal_num_pollers" and labels.get("task_queue") == task_queue
        )
        if pollers <= 0:
            reasons.append(f"no active poller on task queue {task_queue!r}")
    for domain in relays:
        seen = any(
            name == "outbox_backlog" and labels.get("domain") == domain
            for name, labels, _value in parsed
        )
        if not seen:
            reasons.append(f"the {domain!r} outbox relay has not read its outbox yet")
    return reasons


def fetch(port: int, timeout_s: float = TIMEOUT_S) -> str:
    """The metrics text of the process listening on 127.0.0.1:`port`."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode("utf-8", "replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; 0 when healthy (`live`) or ready (`ready`), else 1."""
    parser = argparse.ArgumentParser(prog="worker_probe.py", description=__doc__)
    parser.add_argument("mode", choices=["live", "ready"])
    parser.add_argument("--port", type=int, default=None, help="default: $WORKER_METRICS_PORT")
    parser.add_argument("--task-queue", default=None)
    parser.add_argument("--relay", action="append", default=[], metavar="DOMAIN")
    parser.add_argument("--current-version", action="store_true")
    args = parser.parse_args(argv)
    port = args.port or int(os.environ.get("WORKER_METRICS_PORT") or 0)
    if not port:
        sys.stderr.write("WORKER_METRICS_PORT is not set: the process serves no metrics\n")
        return 1
    try:
        text = fetch(port)
    except (OSError, urllib.error.URLError) as exc:
        sys.stderr.write(f"metrics endpoint on port {port} did not answer: {exc}\n")
        return 1
    if args.mode == "live":
        return 0
    reasons = unready_reasons(text, args.task_queue, args.relay, args.current_version)
    for reason in reasons:
        sys.stderr.write(reason + "\n")
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
