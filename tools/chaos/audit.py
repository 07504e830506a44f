"""After the load: wait until nothing is in flight, then hold the platform to its invariants.

Checked over every checkout of the run: docs/reference/invariants.md (tools/invariants.py: stock,
coupons, reservations, charges against the provider's ledger, a completed order's total adding up
and captured exactly, what a completed or given-back checkout leaves behind), that every accepted
checkout ended as its scenario allows, that Temporal visibility's `CheckoutStatus` agrees with
`checkout_sessions` and no run ended Failed or Terminated, that every outbox drained and nothing
was dead-lettered, that every buyer was told exactly once what the outcome called for (one
notification row of each expected kind, each delivered once according to the sender's log), that
the races sold exactly what there was, and that replaying an ended checkout's request changes
nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus

from kit.db import DomainDatabase
from kit.logging import get_logger
from tools.chaos.client import PatientClient
from tools.chaos.faults import CARRIER_MODES, FaultResult
from tools.chaos.journey import FINAL, NEEDS_ATTENTION, Record
from tools.chaos.workload import EXPIRED, Catalog
from tools.invariants import check_invariants, fetch_ledger
from workflows.checkout.contract import CHECKOUT_STATUS, CHECKOUT_STEP, WORKFLOW_TYPE

log = get_logger(__name__)

Row = Mapping[str, Any]


class Monitors(Protocol):
    """Where to look at what the platform still has in flight outside its databases."""

    @property
    def psp_url(self) -> str:
        """The provider sandbox (its event listings)."""

    @property
    def nats_monitor_url(self) -> str:
        """The NATS monitoring endpoint (consumers' pending messages)."""


# The invariants of docs/reference/invariants.md a run checks: tools/invariants.py's (1 to 6, 8,
# 11, 12 over the returns and refunds of the load, 13 over its shipping rates) and the
# audit's own (7, 8's visibility, 9, and 10: under faults).
INVARIANTS_CHECKED = "1-13"

# How many ended checkouts are replayed (same key, same body) to see that nothing changes.
REPLAYS = 30


@dataclass
class Audit:
    """What was checked and what was wrong (each violation names its checkout when it has one)."""

    checked: int = 0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Paths the run exercised that only the databases can tell (e.g. refunds after a capture).
    coverage: dict[str, int] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        """Record one violation."""
        self.violations.append(message)


async def rows(db: DomainDatabase, sql: str, **params: Any) -> list[Row]:
    """The rows of one query, as mappings."""
    async with db.begin() as session:
        return [dict(row._mapping) for row in await session.execute(text(sql), params)]


async def _running(temporal: Client, waiting: frozenset[str] = frozenset()) -> list[str]:
    """Running workflows, except checkouts that wait for an operator (those never end alone)
    and the workflows in `waiting` (left waiting on purpose, e.g. a return never decided)."""
    running = []
    async for execution in temporal.list_workflows("ExecutionStatus='Running'"):
        attention = execution.typed_search_attributes.get(CHECKOUT_STEP) == NEEDS_ATTENTION
        if not attention and execution.id not in waiting:
            running.append(execution.id)
    return running


async def _count(databases: Mapping[str, DomainDatabase], sql: str) -> dict[str, int]:
    counts = {}
    for domain, db in databases.items():
        found = (await rows(db, sql))[0]["n"]
        if found:
            counts[domain] = int(found)
    return counts


async def nats_backlog(monitor_url: str) -> dict[str, int]:
    """Per JetStream consumer, the messages not yet delivered or not yet acknowledged (an event
    redelivered later, e.g. one that arrived before what it depends on, counts until applied)."""
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(f"{monitor_url}/jsz", params={"consumers": "true"})
        answer.raise_for_status()
    backlog = {}
    for account in answer.json().get("account_details", []):
        for stream in account.get("stream_detail", []):
            for consumer in stream.get("consumer_detail", []):
                waiting = int(consumer.get("num_pending", 0)) + int(
                    consumer.get("num_ack_pending", 0)
                )
                if waiting:
                    backlog[f"{stream['name']}/{consumer['name']}"] = waiting
    return backlog


async def provider_backlog(psp_url: str) -> dict[str, int]:
    """Webhooks the sandbox has still to deliver (payment events, carrier tracking), by kind."""
    backlog: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=psp_url, timeout=10) as http:
        listings = (("payment", "/v1/events", "data"), ("carrier", "/v2/events", "events"))
        for kind, path, key in listings:
            answer = await http.get(path, params={"limit": 10_000})
            answer.raise_for_status()
            for event in answer.json()[key]:
                if event["delivery"]["state"] == "pending":
                    backlog[kind] += 1
    return dict(backlog)


async def provider_timers(psp_url: str) -> dict[str, float]:
    """Transitions the sandbox will still make on its own, by timer: seconds until the next (a
    parcel moving along its tracking, an async payment settling, a refund failing, a dispute
    opening). Each sends a webhook the platform then acts on: its outbox and its buyers'
    notifications are not final while one is scheduled, even with nothing else in flight."""
    async with httpx.AsyncClient(base_url=psp_url, timeout=10) as http:
        answer = await http.get("/v1/test_helpers/timers")
        answer.raise_for_status()
    now = time.time()
    return {name: round(max(0.0, due - now), 1) for name, due in answer.json()["pending"].items()}


async def busy(
    temporal: Client,
    databases: Mapping[str, DomainDatabase],
    monitors: Monitors,
    waiting: frozenset[str] = frozenset(),
) -> list[str]:
    """What is still in flight: running workflows (but those in `waiting`), webhooks not yet
    delivered or still to come (the provider's scheduled transitions), unpublished events,
    events not yet applied by their consumers, unsent notifications."""
    found = []
    running = await _running(temporal, waiting)
    if running:
        found.append(f"{len(running)} workflows running (e.g. {running[0]})")
    # Timers first: one firing records its webhook in the same transaction, so a transition
    # between the two looks is seen as a webhook not yet delivered.
    timers = await provider_timers(monitors.psp_url)
    if timers:
        found.append(f"provider transitions still scheduled (next in s) {timers}")
    webhooks = await provider_backlog(monitors.psp_url)
    if webhooks:
        found.append(f"webhooks not yet delivered {webhooks}")
    consumers = await nats_backlog(monitors.nats_monitor_url)
    if consumers:
        found.append(f"events not yet applied {consumers}")
    outbox = await _count(
        databases, "SELECT count(*) AS n FROM domain_outbox_events WHERE NOT processed"
    )
    if outbox:
        found.append(f"unpublished outbox rows {outbox}")
    pending = await rows(
        databases["notifications"],
        "SELECT count(*) AS n FROM notifications WHERE status = 'pending'",
    )
    if pending[0]["n"]:
        found.append(f"{pending[0]['n']} notifications pending")
    return found


async def wait_quiescent(
    temporal: Client,
    databases: Mapping[str, DomainDatabase],
    monitors: Monitors,
    timeout_s: float,
    waiting: frozenset[str] = frozenset(),
) -> list[str]:
    """Wait until nothing is in flight but the workflows in `waiting` (left waiting on
    purpose); what still is after `timeout_s` ([] when quiet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    quiet_since: float | None = None
    told = loop.time()
    while True:
        try:
            still = await busy(temporal, databases, monitors, waiting)
        except Exception as exc:  # a service still restarting: try again
            still = [f"cannot look: {type(exc).__name__}: {exc}"]
        now = loop.time()
        if still and now - told >= 10:
            log.info("chaos.settling", busy=still)
            told = now
        if still:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        # Quiet for two seconds running: a consumer may still be applying the last event.
        if quiet_since is not None and now - quiet_since >= 2:
            return []
        if now > deadline:
            return still
        await asyncio.sleep(0.5)


def mark_faults(records: list[Record], faults: list[FaultResult]) -> None:
    """Note on each record the faults in effect at some moment of its checkout's life (from its
    first request to its end; a fault lasts from its injection until the platform recovered)."""
    for record in records:
        if record.started_s is None:
            continue
        ended = record.ended_s if record.ended_s is not None else math.inf
        record.faults_met = frozenset(
            result.fault.name
            for result in faults
            if result.injected_s <= ended
            and record.started_s <= (result.recovered_s or result.ended_s or math.inf)
        )


def check_clients(records: list[Record], sessions: dict[str, Row], audit: Audit) -> None:
    """Every accepted checkout ended, as its scenario allows, as the database says."""
    for record in records:
        tag = f"checkout {record.checkout_id} ({record.plan.scenario.name}, #{record.plan.index})"
        if record.error:
            audit.fail(f"{tag}: client: {record.error}")
        if record.checkout_id is None:
            continue
        row = sessions.get(record.checkout_id)
        if row is None:
            audit.fail(f"{tag}: accepted but not in checkout_sessions")
            continue
        if record.step == NEEDS_ATTENTION or row["step"] == NEEDS_ATTENTION:
            audit.fail(f"{tag}: waits at needs_attention")
        elif record.outcome is not None and record.outcome not in record.expected:
            audit.fail(
                f"{tag}: ended {record.outcome}, expected one of {sorted(record.expected, key=str)}"
                f" (cancel answered {record.cancel_answer} {record.cancel_code or ''})"
            )
        if record.status in FINAL and row["status"] != record.status:
            audit.fail(f"{tag}: the client saw {record.status}, the database says {row['status']}")
    known = {r.checkout_id for r in records}
    for checkout_id in sessions.keys() - known:
        audit.notes.append(f"checkout {checkout_id} is in checkout_sessions but no client has it")


async def check_contract(
    databases: Mapping[str, DomainDatabase], psp_url: str, sessions: dict[str, Row], audit: Audit
) -> None:
    """The invariants through tools/invariants.py, over every checkout of the run."""
    report = await check_invariants(databases, psp_url, [uuid.UUID(c) for c in sessions])
    audit.checked = report.checkouts
    audit.violations += report.violations
    ledger = await fetch_ledger(psp_url)
    for checkout_id in ledger.keys() - sessions.keys():
        audit.fail(f"the provider holds intents of checkout {checkout_id}, unknown to the platform")


async def check_visibility(temporal: Client, sessions: dict[str, Row], audit: Audit) -> None:
    """Every checkout has a run; none ended Failed or Terminated; `CheckoutStatus` = database."""
    seen: set[str] = set()
    async for execution in temporal.list_workflows(f"WorkflowType='{WORKFLOW_TYPE}'"):
        checkout_id = execution.id.removeprefix("checkout-")
        seen.add(checkout_id)
        row = sessions.get(checkout_id)
        if execution.status not in (
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.RUNNING,
        ):
            status = execution.status.name if execution.status else "unknown"
            audit.fail(f"checkout {checkout_id}: run {execution.run_id} ended {status}")
        attribute = execution.typed_search_attributes.get(CHECKOUT_STATUS)
        if row is None:
            audit.fail(f"workflow {execution.id} has no checkout_sessions row")
        elif attribute != row["status"]:
            audit.fail(
                f"checkout {checkout_id}: CheckoutStatus {attribute!r} but the database says "
                f"{row['status']!r} (run {execution.run_id})"
            )
    for checkout_id in sessions.keys() - seen:
        audit.fail(f"checkout {checkout_id}: no CheckoutWorkflow run in visibility")


async def check_events(databases: Mapping[str, DomainDatabase], audit: Audit) -> None:
    """Every outbox drained; no event dead-lettered by a consumer."""
    outbox = await _count(
        databases, "SELECT count(*) AS n FROM domain_outbox_events WHERE NOT processed"
    )
    for domain, count in outbox.items():
        audit.fail(f"{domain}: {count} outbox rows never published")
    for domain, db in databases.items():
        exists = await rows(db, "SELECT to_regclass('consumer_dead_letters') IS NOT NULL AS n")
        if not exists[0]["n"]:
            continue
        for dead in await rows(
            db,
            "SELECT consumer, subject, reason, left(error, 300) AS error "
            "FROM consumer_dead_letters",
        ):
            audit.fail(
                f"{domain}: consumer {dead['consumer']} dead-lettered {dead['subject']} "
                f"({dead['reason']}): {dead['error']}"
            )


def _expected_notifications(row: Row) -> dict[str, tuple[int, int]]:
    """Per notification type, (at least, at most) for a checkout ending as `row` says."""
    status = row["status"]
    at_most_one = {
        kind: (0, 1)
        for kind in (
            "order_confirmed",
            "payment_captured",
            "shipment_created",
            "shipment_delivered",
        )
    }
    expected = {**at_most_one, "checkout_failed": (0, 0), "checkout_expired": (0, 0)}
    if status == "completed":
        paid = row["total_amount"] is not None and row["total_amount"] > 0
        expected.update(
            order_confirmed=(1, 1), shipment_created=(1, 1), payment_captured=(int(paid), int(paid))
        )
    elif status == "failed":
        expected["checkout_failed"] = (1, 1)
    elif status == "expired":
        expected["checkout_expired"] = (1, 1)
    return expected


async def check_notifications(db: DomainDatabase, sessions: dict[str, Row], audit: Audit) -> None:
    """Every buyer (one checkout each) told exactly once what the outcome calls for; all sent."""
    by_user: dict[str, Counter[str]] = defaultdict(Counter)
    for note in await rows(db, "SELECT user_id::text AS user_id, type, status FROM notifications"):
        by_user[note["user_id"]][note["type"]] += 1
        if note["status"] != "sent":
            audit.fail(f"user {note['user_id']}: a {note['type']} notification is {note['status']}")
    for checkout_id, row in sessions.items():
        if row["status"] not in FINAL:
            continue
        got = by_user.get(row["user_id"], Counter())
        for kind, (least, most) in _expected_notifications(row).items():
            if not least <= got[kind] <= most:
                audit.fail(
                    f"checkout {checkout_id} ({row['status']}): {got[kind]} {kind} notifications, "
                    f"expected {least}..{most}"
                )


def check_aftersale(records: list[Record], audit: Audit) -> None:
    """The after-sale scenarios: a declined card retried with another was paid with it, a
    lost, stolen or fraudulent decline showed no reason, and every after-sale step that applied
    (a dispute shown, a dashboard refund on the order, a failed refund resolved) went through."""
    for record in records:
        scenario = record.plan.scenario
        tag = f"checkout {record.checkout_id} ({scenario.name}, #{record.plan.index})"
        if record.leaked:
            audit.fail(f"{tag}: the buyer was shown the decline's reason: {record.leaked!r}")
        # Expired where the contract allows it, the retry may have come too late or never.
        excused = record.outcome == EXPIRED and EXPIRED in record.expected
        if scenario.retry_with and record.outcome and record.retried != 202 and not excused:
            audit.fail(f"{tag}: the payment retry was answered {record.retried}")
        if record.aftersale not in (None, "ok"):
            audit.fail(f"{tag}: {scenario.after}: {record.aftersale}")
        if record.aftersale == "ok":
            key = f"aftersale_{scenario.after}"
            audit.coverage[key] = audit.coverage.get(key, 0) + 1
        if record.aftersale == "ok" and record.order_cancel:
            key = f"order_cancel_{record.order_cancel}"
            audit.coverage[key] = audit.coverage.get(key, 0) + 1
        for path in record.paths:
            audit.coverage[path] = audit.coverage.get(path, 0) + 1


# Where a return stands while it still waits for someone (the buyer's parcel, an operator).
OPEN_RETURNS = ("requested", "approved", "received", "needs_attention")


async def check_returns(
    api: PatientClient,
    catalog: Catalog,
    db: DomainDatabase,
    records: list[Record],
    audit: Audit,
) -> None:
    """Every return has ended (refunded or rejected) once nothing is in flight, except those a
    journey left waiting on purpose, which must show in the operators' list of their status."""
    abandoned = {r.abandoned_return for r in records if r.abandoned_return}
    waiting = await rows(
        db,
        "SELECT id::text AS id, status FROM order_returns WHERE status = ANY(:open)",
        open=list(OPEN_RETURNS),
    )
    for row in waiting:
        if row["id"] not in abandoned:
            audit.fail(f"return {row['id']} still {row['status']} after the run")
            continue
        answer = await api.send(
            "GET", f"/v1/ops/returns?status={row['status']}&limit=100", headers=catalog.operator
        )
        listed = {r["id"] for r in answer.response.json().get("data", [])}
        if row["id"] not in listed:
            audit.fail(f"return {row['id']} waits {row['status']} but GET /v1/ops/returns hides it")


def _met(step: Row, fault: FaultResult) -> bool:
    """Whether a step ran (from its start to its last update) while `fault` was in effect."""
    ended = fault.ended_at or step["updated_at"]
    return bool(step["started_at"] <= ended and step["updated_at"] >= fault.injected_at)


async def check_carrier_faults(
    db: DomainDatabase, sessions: dict[str, Row], faults: list[FaultResult], audit: Audit
) -> None:
    """A checkout whose shipment was being bought while the carrier was down or slow still
    ended: `create_shipment` retries until the carrier answers (it is after the capture: only
    forward), so it completed, unless an operator cancelled it (then refunded). Counted by fault
    and ending in the coverage (`carrier-down_completed`, ...)."""
    carrier = [f for f in faults if f.fault.kind in CARRIER_MODES]
    if not carrier:
        return
    steps = await rows(
        db,
        "SELECT session_id::text AS id, started_at, updated_at FROM checkout_steps "
        "WHERE step_name = 'create_shipment'",
    )
    for fault in carrier:
        met = [step["id"] for step in steps if _met(step, fault)]
        for checkout_id in met:
            status = sessions.get(checkout_id, {}).get("status")
            key = f"{fault.fault.name}_{status}"
            audit.coverage[key] = audit.coverage.get(key, 0) + 1
            if status not in ("completed", "cancelled"):
                audit.fail(
                    f"checkout {checkout_id}: its shipment met {fault.fault.name} and it ended "
                    f"{status}"
                )
        if not met:
            audit.notes.append(f"{fault.fault.name}: no checkout was buying its label meanwhile")


def check_races(records: list[Record], catalog: Catalog, audit: Audit) -> None:
    """A race sells exactly what there is: min(capacity, buyers) completed, the rest refused."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.plan.group:
            groups[record.plan.group].append(record)
    for group, members in sorted(groups.items()):
        capacity = catalog.capacity[group]
        won = sum(1 for r in members if r.status == "completed")
        wanted = min(capacity, sum(1 for r in members if r.checkout_id))
        if won != wanted:
            audit.fail(
                f"race {group}: {won} of {len(members)} buyers completed, capacity {capacity}"
            )


async def check_replays(
    api: PatientClient,
    records: list[Record],
    databases: Mapping[str, DomainDatabase],
    audit: Audit,
) -> None:
    """Replaying an ended checkout's request (same key, same body) answers its recorded outcome
    and changes nothing (invariant 9)."""
    ended = [r for r in records if r.status in FINAL and r.plan.buyer][:REPLAYS]
    if not ended:
        return
    ids = [r.checkout_id for r in ended]
    sql = (
        "SELECT id::text AS id, updated_at, status FROM checkout_sessions "
        "WHERE id::text = ANY(:ids)"
    )
    before = {r["id"]: r for r in await rows(databases["checkout"], sql, ids=ids)}
    for record in ended:
        assert record.plan.buyer is not None
        answer = await api.send(
            "POST",
            "/v1/checkouts",
            json=record.plan.body(),
            headers={**record.plan.buyer.headers, "Idempotency-Key": record.key},
        )
        body = answer.response.json() if answer.response.status_code == 202 else {}
        if (body.get("checkout_id"), body.get("status")) != (record.checkout_id, record.status):
            audit.fail(
                f"checkout {record.checkout_id} ({record.status}): a replay answered "
                f"{answer.response.status_code} {answer.response.text[:200]}"
            )
    after = {r["id"]: r for r in await rows(databases["checkout"], sql, ids=ids)}
    for checkout_id, row in before.items():
        if after.get(checkout_id) != row:
            changed = after.get(checkout_id)
            audit.fail(f"checkout {checkout_id}: a replay changed its session {row} -> {changed}")


async def explain_attention(temporal: Client, sessions: dict[str, Row], audit: Audit) -> None:
    """For each checkout waiting at needs_attention, what it waits for (its `attention` query)."""
    for checkout_id, row in sessions.items():
        if row["step"] != NEEDS_ATTENTION or row["status"] in FINAL:
            continue
        try:
            attention = await temporal.get_workflow_handle(f"checkout-{checkout_id}").query(
                "attention"
            )
        except Exception as exc:
            attention = f"(cannot ask: {type(exc).__name__}: {exc})"
        audit.notes.append(f"checkout {checkout_id} waits at needs_attention: {attention}")


def _sends(log_path: Path) -> Counter[str]:
    """How many times the development sender delivered each notification (its log lines)."""
    sends: Counter[str] = Counter()
    if not log_path.exists():
        return sends
    with log_path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"notifications.sent"' not in line:
                continue
            try:
                sends[json.loads(line)["notification_id"]] += 1
            except (ValueError, KeyError):
                continue  # a line cut short by a SIGKILL
    return sends


async def check_sent_once(db: DomainDatabase, log_path: Path, mailbox: Path, audit: Audit) -> None:
    """Each notification marked sent was delivered exactly once. The development sender logs
    every delivery (`notifications.sent`) before it commits the row as sent, so a sender killed
    between the two sends again after its restart: the mailbox must refuse that second delivery
    (the notification id is its idempotency key), and two `sent` lines for one id mean it did
    not. A sender killed between delivering and logging leaves no line, only the message in the
    mailbox, which counts as its one delivery."""
    sends = _sends(log_path)
    for note in await rows(
        db,
        "SELECT id::text AS id, user_id::text AS user_id, type FROM notifications "
        "WHERE status = 'sent'",
    ):
        count = sends.get(note["id"], 0)
        if count == 0 and (mailbox / f"{note['id']}.json").exists():
            count = 1
        if count != 1:
            audit.fail(
                f"notification {note['id']} ({note['type']} to user {note['user_id']}) was "
                f"delivered {count} times"
            )


async def count_refunds(
    databases: Mapping[str, DomainDatabase], sessions: dict[str, Row], audit: Audit
) -> None:
    """How many checkouts ended with their captured payment refunded, by status (the cancels
    after the capture, and the failures after it)."""
    refunded = await rows(
        databases["payments"],
        "SELECT checkout_id::text AS id FROM payments WHERE refunded_amount > 0",
    )
    for row in refunded:
        status = sessions.get(row["id"], {}).get("status", "unknown")
        key = f"refunded_{status}"
        audit.coverage[key] = audit.coverage.get(key, 0) + 1


async def count_whole_prices(db: DomainDatabase, audit: Audit) -> None:
    """How many orders charged shipping and tax (invariant 13 over non-zero parts)."""
    found = (
        await rows(
            db,
            "SELECT count(*) FILTER (WHERE shipping_amount > 0) AS shipping, "
            "count(*) FILTER (WHERE tax_amount > 0) AS tax FROM orders",
        )
    )[0]
    for part in ("shipping", "tax"):
        if found[part]:
            audit.coverage[f"orders_with_{part}"] = int(found[part])


async def check_outcomes(
    temporal: Client,
    databases: Mapping[str, DomainDatabase],
    psp_url: str,
    records: list[Record],
    audit: Audit,
) -> dict[str, Row]:
    """The checks every run ends with (chaos and soak alike), over every checkout session:
    clients' answers, section 7, visibility, outboxes and notifications. Returns the sessions."""
    sessions = {
        row["id"]: row
        for row in await rows(
            databases["checkout"],
            "SELECT id::text AS id, user_id::text AS user_id, status, step, "
            "failure_code, total_amount FROM checkout_sessions",
        )
    }
    check_clients(records, sessions, audit)
    await check_contract(databases, psp_url, sessions, audit)
    await check_visibility(temporal, sessions, audit)
    await check_events(databases, audit)
    await check_notifications(databases["notifications"], sessions, audit)
    return sessions
