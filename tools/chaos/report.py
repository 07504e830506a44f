"""The report of a chaos run: outcomes, faults and recovery, latency, violations; then JSON."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from tools.chaos.audit import INVARIANTS_CHECKED
from tools.chaos.faults import FaultResult
from tools.chaos.journey import Record
from tools.chaos.run import Outcome, summary_fields
from tools.columns import aligned

Window = tuple[float, float | None]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _during(at: float | None, windows: Iterable[Window]) -> bool:
    return at is not None and any(start <= at <= (end or math.inf) for start, end in windows)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return {
        "n": len(values),
        "p50": None if p50 is None else round(p50, 1),
        "p99": None if p99 is None else round(p99, 1),
    }


def latencies(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """p50/p99 in ms, overall and for what started while a fault was in effect.

    accept: first POST /v1/checkouts to its 202 (retries through an outage included);
    end_to_end: first POST to the final status seen by polling, completed checkouts only;
    request: every answered HTTP attempt.
    """
    windows = [f.window for f in outcome.faults]
    records = outcome.records
    accept = [(r.started_s, r.accepted_s) for r in records if r.accepted_s and r.started_s]
    ended = [
        (r.started_s, r.ended_s)
        for r in records
        if r.status == "completed" and r.started_s is not None and r.ended_s is not None
    ]
    figures: dict[str, dict[str, Any]] = {}
    for name, pairs in (("accept", accept), ("end_to_end", ended)):
        figures[name] = _stats([(end - start) * 1000 for start, end in pairs if start is not None])
        figures[f"{name}_during_faults"] = _stats(
            [(end - start) * 1000 for start, end in pairs if _during(start, windows)]
        )
    samples = outcome.requests.samples
    figures["request"] = _stats([ms for _, ms in samples])
    figures["request_during_faults"] = _stats([ms for at, ms in samples if _during(at, windows)])
    return figures


def _outcome_name(record: Record) -> str:
    if record.outcome is None:
        return f"unfinished ({record.step or record.error or 'not accepted'})"
    status, code = record.outcome
    return status if code is None or status == "completed" else f"{status}/{code}"


def _fault_row(result: FaultResult) -> dict[str, Any]:
    return {
        "name": result.fault.name,
        "hold_s": result.fault.hold_s,
        "injected_at_s": round(result.injected_s, 1),
        "in_flight": result.in_flight,
        "pids": list(result.pids),
        "restarted_s": result.seconds(result.restarted_s),
        "healthy_s": result.seconds(result.healthy_s),
        "recover_s": result.seconds(result.recovered_s),
        "recovered": result.recovered,
        "probe": result.probe,
        "errors": result.errors,
    }


def summary(outcome: Outcome) -> dict[str, Any]:
    """The figures of a run (the report's last line)."""
    records = outcome.records
    accepted = [r for r in records if r.checkout_id]
    # How each planned cancel went: 202, 409, or never sent (the checkout ended first).
    cancels = Counter(
        f"{r.plan.cancel}:{r.cancel_answer or 'ended first'}" for r in records if r.plan.cancel
    )
    return {
        **summary_fields(outcome),
        "accepted": len(accepted),
        "probes": len(outcome.probes),
        "by_status": dict(Counter(r.status or "none" for r in accepted)),
        "by_outcome": dict(sorted(Counter(_outcome_name(r) for r in records).items())),
        "by_scenario": {
            name: dict(Counter(_outcome_name(r) for r in records if r.plan.scenario.name == name))
            for name in sorted({r.plan.scenario.name for r in records})
        },
        "cancels": dict(cancels),
        "coverage": outcome.audit.coverage,
        "unfinished": sum(1 for r in accepted if r.outcome is None),
        # Checkouts started over a second after their planned time: paced with the faults (the
        # load never runs ahead of them) or waiting for a slot (--max-in-flight).
        "held_back": sum(
            1 for r in records if r.started_s is not None and r.started_s - r.plan.at_s > 1
        ),
        "faults": [_fault_row(f) for f in outcome.faults],
        "faults_injected": len(outcome.faults),
        "faults_recovered": sum(1 for f in outcome.faults if f.recovered),
        "latency_ms": latencies(outcome),
        "client_retries": outcome.requests.retries,
        "client_gave_up": outcome.requests.gave_up,
        "checked": outcome.audit.checked,
        "invariants_checked": INVARIANTS_CHECKED,
        # Invariant 11 (money after the sale) applied: completed checkouts with refunds since.
        "after_sale_refunds": outcome.audit.coverage.get("refunded_completed", 0),
        "violations": len(outcome.audit.violations),
        "violation_messages": outcome.audit.violations[:100],
        "still_busy": outcome.still_busy,
        "error": outcome.error,
        "phases_s": outcome.phases,
        "elapsed_s": round(outcome.elapsed_s, 1),
        "ok": outcome.ok,
    }


def _table(rows: list[list[str]]) -> list[str]:
    return aligned(rows, right=False, indent="  ")


def _fault_lines(figures: dict[str, Any]) -> list[str]:
    if not figures["faults"]:
        return ["faults: none"]
    rows = [
        ["fault", "at_s", "in_flight", "hold_s", "restarted", "healthy", "recovered", "pid", "ok"]
    ]
    for f in figures["faults"]:
        before, after = f["pids"]
        rows.append(
            [
                f["name"],
                str(f["injected_at_s"]),
                str(f["in_flight"]),
                str(f["hold_s"]),
                "-" if f["restarted_s"] is None else str(f["restarted_s"]),
                str(f["healthy_s"]),
                str(f["recover_s"]),
                str(before) if before == after else f"{before}->{after}",
                "yes" if f["recovered"] else "NO " + "; ".join(f["errors"]),
            ]
        )
    return [
        "faults (restarted / healthy / recovered: seconds after the kill, or after the hold ended;"
        " recovered = a probe checkout started after /healthz was 200 again has completed):",
        *_table(rows),
    ]


def render(outcome: Outcome) -> str:
    """The human-readable report, then the figures as one JSON line."""
    figures = summary(outcome)
    lines = [
        f"chaos: {figures['checkouts']} checkouts at {figures['rate']}/s, "
        f"faults {figures['faults_spec']} x{figures['rounds']}, {figures['elapsed_s']}s "
        f"{figures['phases_s']}, data {figures['data_dir']}",
        f"accepted: {figures['accepted']} (+{figures['probes']} probe checkouts), "
        f"unfinished: {figures['unfinished']}, client retries: {figures['client_retries']}, "
        f"gave up: {figures['client_gave_up']}, held back (pacing, --max-in-flight): "
        f"{figures['held_back']}, cancels: {figures['cancels']}, paths: {figures['coverage']}",
        "outcomes:",
        *_table([[name, str(n)] for name, n in figures["by_outcome"].items()]),
        "by scenario:",
        *[f"  {name}: {counts}" for name, counts in figures["by_scenario"].items()],
        *_fault_lines(figures),
        "latency (ms):",
        *_table(
            [["", "n", "p50", "p99"]]
            + [
                [k, str(v["n"]), str(v["p50"]), str(v["p99"])]
                for k, v in figures["latency_ms"].items()
            ]
        ),
        f"audit: {figures['checked']} checkouts checked against invariants "
        f"{figures['invariants_checked']} (11 over {figures['after_sale_refunds']} completed "
        f"checkouts refunded since), {figures['violations']} violations",
        *[f"  VIOLATION {v}" for v in outcome.audit.violations],
        *[f"  note: {n}" for n in outcome.audit.notes],
        *[f"  STILL BUSY {b}" for b in outcome.still_busy],
        *([f"  ERROR {outcome.error}"] if outcome.error else []),
        "result: " + ("ok" if outcome.ok else "FAILED"),
        json.dumps(figures, default=str),
    ]
    return "\n".join(lines) + "\n"
