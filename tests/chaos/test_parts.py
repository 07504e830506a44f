"""The chaos and soak tools' parts, without a platform: the workload's mix, the fault schedule,
the patient client's retries, the audit's judgements, the report's figures, the soak's verdict,
and the supervisor's stack.json they read the pids from."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from easypost.errors.api.service_unavailable_error import ServiceUnavailableError

from devstack.processes import sandbox_process
from devstack.services.process import ManagedProcess, free_port
from devstack.stack import write_state
from devstack.supervisor import RestartPolicy, Supervisor
from tools.chaos.audit import (
    Audit,
    _expected_notifications,
    _met,
    _sends,
    check_aftersale,
    check_clients,
    check_races,
    check_returns,
    count_whole_prices,
    mark_faults,
    provider_timers,
)
from tools.chaos.client import Answer, GaveUp, PatientClient, RequestLog
from tools.chaos.faults import TERM, FaultResult, Injector, catalog, schedule
from tools.chaos.journey import Record, leaked_reason
from tools.chaos.moneyback import abandoned_workflows, return_share
from tools.chaos.report import latencies, percentile
from tools.chaos.run import ChaosConfig, Outcome, Pacer, _pace_index
from tools.chaos.stack import Child
from tools.chaos.workload import (
    CANCELLED,
    COMPLETED,
    COUPON_BUYERS,
    EXPIRED,
    PAYMENT_TIMEOUT_S,
    SCARCE_BUYERS,
    SCENARIOS,
    SINGLES,
    Buyer,
    Catalog,
    Plan,
    plan,
)
from tools.soak import Sample, judge, slope_per_hour
from workers.bootstrap import WORKER_DOMAINS

# -- the workload ----------------------------------------------------------------------------------


def test_a_plan_has_every_scenario_races_in_bursts_and_a_steady_rate() -> None:
    plans = plan(200, 2.0, random.Random(7))
    assert len(plans) == 200
    assert [p.index for p in plans] == list(range(200))
    assert [p.at_s for p in plans] == sorted(p.at_s for p in plans)
    names = Counter(p.scenario.name for p in plans)
    assert {s.name for s in SINGLES} | {"coupon_race", "scarce_stock"} <= set(names)
    groups: dict[str, list[Plan]] = {}
    for one in plans:
        if one.group:
            groups.setdefault(one.group, []).append(one)
    assert names["coupon_race"] == 30
    assert names["scarce_stock"] == 20
    for group, members in groups.items():
        assert len({m.at_s for m in members}) == 1, f"{group} does not start at one moment"
        limit = COUPON_BUYERS if group.startswith("coupon") else SCARCE_BUYERS
        assert len(members) <= limit
    # The load spans n / rate, and its tail is singles: the last faults, paced with the last
    # checkouts, meet work in flight (races start together, paced by their first member).
    assert plans[-1].at_s == pytest.approx(200 / 2.0, rel=0.02)
    assert not any(p.group for p in plans[-10:])
    # Cancels only where they make sense: buyers on cancellable scenarios, operators not on 3DS.
    assert any(p.cancel == "buyer" for p in plans)
    assert any(p.cancel == "operator" for p in plans)
    assert all(p.scenario.cancellable for p in plans if p.cancel)
    assert not any(p.scenario.approve for p in plans if p.cancel == "operator")


def test_small_loads_do_not_race_and_bodies_take_both_payment_shapes() -> None:
    plans = plan(10, 1.0, random.Random(1))
    assert not any(p.group for p in plans)
    one = Plan(0, SCENARIOS["visa"], 0.0, alias=True, coupon_code="X")
    one.buyer = type("B", (), {"cart_id": "c", "headers": {}, "user_id": "u"})()
    assert one.body()["payment"] == {"provider": "sandbox", "token": "tok_visa"}
    assert one.body()["coupon_code"] == "X"
    one.alias = False
    assert one.body()["payment"] == {"provider": "stripe", "payment_method": "pm_card_visa"}


# -- the fault schedule ----------------------------------------------------------------------------


def test_the_schedules_cover_every_fault_kind() -> None:
    every = schedule("all")
    assert {f.target for f in every if f.kind == "kill"} >= {f"worker-{d}" for d in WORKER_DOMAINS}
    assert {f.name for f in every} == set(catalog())
    kinds = schedule("kinds", rounds=2)
    workers = [f.target for f in kinds if f.family == "kill:worker"]
    assert len(workers) == 2
    assert workers[0] != workers[1], "each round kills another worker"
    assert {f.family for f in kinds} == {f.family for f in every}
    assert schedule("none") == []
    assert [f.name for f in schedule("kill:api,postgres")] == ["kill:api", "postgres"]
    with pytest.raises(ValueError, match="unknown faults"):
        schedule("kill:everything")
    assert catalog(psp_down_s=7)["psp-down"].hold_s == 7
    carrier = {f.name: f for f in every if f.kind.startswith("carrier_")}
    assert sorted(carrier) == ["carrier-down", "carrier-slow"]
    assert {f.name for f in kinds} >= set(carrier)
    assert catalog(carrier_slow_s=4)["carrier-slow"].hold_s == 4


def test_the_default_rate_spreads_the_load_over_the_faults() -> None:
    config = ChaosConfig(
        checkouts=100,
        faults="kinds",
        psp_down_s=10,
        psp_slow_s=10,
        carrier_down_s=10,
        carrier_slow_s=10,
    )
    faults = config.fault_schedule()
    rate = config.load_rate(faults)
    assert 0.5 < rate < 2.0
    assert ChaosConfig(checkouts=100, faults="none").load_rate([]) == 2.0
    assert ChaosConfig(rate=3.5).load_rate(faults) == 3.5


async def test_the_load_never_runs_ahead_of_the_faults() -> None:
    pacer = Pacer(checkouts=10, faults=2)
    for index in range(5):
        await asyncio.wait_for(pacer.turn(index), timeout=1)
    sixth = asyncio.ensure_future(pacer.turn(5))
    await asyncio.sleep(0.05)
    assert not sixth.done(), "the second half waits for the first fault to be over"
    await pacer.fault_over()
    await asyncio.wait_for(sixth, timeout=1)
    await asyncio.wait_for(Pacer(3, 0).turn(2), timeout=1)  # no faults: no pacing

    racers = [Plan(i, SCENARIOS["coupon_race"], 5.0, group="coupon_race-1") for i in (3, 4, 5)]
    others = [Plan(i, SCENARIOS["visa"], float(i)) for i in (0, 1, 2, 6)]
    paced = _pace_index([Record(p) for p in sorted(others + racers, key=lambda p: p.index)])
    assert paced == {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 3, 6: 6}, "a race starts as one"


# -- the patient client ----------------------------------------------------------------------------


async def test_the_client_retries_5xx_429_and_lost_connections_then_answers() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            "connect",
            httpx.Response(503),
            "read",
            httpx.Response(202, json={"ok": True}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "connect":
            raise httpx.ConnectError("refused", request=request)
        if answer == "read":
            raise httpx.ReadTimeout("no answer", request=request)
        assert isinstance(answer, httpx.Response)
        return answer

    log = RequestLog()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as h:
        answer = await PatientClient(h, log, rng=random.Random(1)).send("POST", "/v1/checkouts")
    assert answer.response.status_code == 202
    assert answer.attempts == 5
    assert answer.ambiguous
    assert log.retries == 4
    assert len(log.samples) == 3


async def test_a_refused_connection_alone_is_not_ambiguous_and_the_client_gives_up() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    log = RequestLog()
    async with httpx.AsyncClient(transport=httpx.MockTransport(refused), base_url="http://x") as h:
        client = PatientClient(h, log, rng=random.Random(1), give_up_after_s=0.3)
        with pytest.raises(GaveUp):
            await client.send("GET", "/healthz")
    assert log.gave_up == 1

    calls: Iterator[Exception | httpx.Response] = iter(
        [httpx.ConnectError("refused"), httpx.Response(409, json={"code": "x"})]
    )

    def once_refused(request: httpx.Request) -> httpx.Response:
        answer = next(calls)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(once_refused), base_url="http://x"
    ) as h:
        answer = await PatientClient(h, RequestLog(), rng=random.Random(1)).send("POST", "/c")
    assert answer.response.status_code == 409
    assert not answer.ambiguous


# -- the audit's judgements ------------------------------------------------------------------------


def _record(scenario: str, outcome: tuple[str, str | None], **kwargs: object) -> Record:
    record = Record(Plan(0, SCENARIOS[scenario], 0.0), checkout_id=str(uuid.uuid4()))
    record.status, record.code = outcome
    record.step = "complete"
    for name, value in kwargs.items():
        setattr(record, name, value)
    return record


def _session(
    record: Record, status: str | None = None, step: str = "complete"
) -> dict[str, object]:
    return {"status": status or record.status, "step": step}


def test_the_audit_flags_outcomes_the_contract_does_not_allow() -> None:
    fine = _record("visa", ("completed", None))
    wrong = _record("declined", ("completed", None))
    cancelled = _record("visa", ("cancelled", "cancelled"), cancel_answer=202)
    refused_cancel = _record("visa", ("cancelled", "cancelled"), cancel_answer=409)
    maybe = _record("visa", ("cancelled", "cancelled"), cancel_answer=409, cancel_ambiguous=True)
    disagree = _record("visa", ("completed", None))
    parked = _record("visa", ("processing", None))
    parked.step = "needs_attention"
    records = [fine, wrong, cancelled, refused_cancel, maybe, disagree, parked]
    sessions = {r.checkout_id: _session(r) for r in records if r.checkout_id}
    assert disagree.checkout_id
    assert parked.checkout_id
    sessions[disagree.checkout_id] = _session(disagree, status="failed")
    sessions[parked.checkout_id] = _session(parked, step="needs_attention")
    audit = Audit()
    check_clients(records, sessions, audit)  # type: ignore[arg-type]
    flagged = " | ".join(audit.violations)
    assert len(audit.violations) == 4, flagged
    for record in (wrong, refused_cancel, disagree, parked):
        assert str(record.checkout_id) in flagged
    assert cancelled.expected == frozenset({CANCELLED})
    assert CANCELLED in maybe.expected


def test_the_after_sale_scenarios_expect_what_the_platform_promises() -> None:
    assert SCENARIOS["decline_retry"].expect == frozenset({COMPLETED})
    for name in ("lost", "stolen", "fraudulent"):
        assert SCENARIOS[name].expect == frozenset({("failed", "payment_declined")})
        assert SCENARIOS[name].generic
    assert SCENARIOS["refund_fail"].expect == frozenset({COMPLETED})
    assert SCENARIOS["dispute"].expect == frozenset({COMPLETED})
    assert SCENARIOS["dashboard_refund"].expect == frozenset({COMPLETED})
    retry = Plan(0, SCENARIOS["decline_retry"], 0.0)
    retry.buyer = Buyer("u", {}, "c")
    assert retry.body()["on_decline"] == "retry"
    assert "on_decline" not in Plan(0, SCENARIOS["visa"], 0.0, buyer=retry.buyer).body()


def test_a_generic_decline_must_not_tell_its_reason() -> None:
    generic = {
        "failure": {"code": "payment_declined", "message": "The payment was declined."},
        "payment": {"status": "failed", "last_error": {"code": "card_declined", "message": "x"}},
    }
    assert leaked_reason(generic) is None
    told = {"payment": {"last_error": {"code": "stolen_card", "message": "Your card was stolen"}}}
    assert leaked_reason(told) == "stolen_card"
    assert leaked_reason({"failure": {"code": "x", "message": "Suspected FRAUD"}})


def test_the_audit_flags_after_sale_steps_that_did_not_go_through() -> None:
    fine = _record("dispute", COMPLETED, aftersale="ok")
    no_dispute = _record("dispute", COMPLETED, aftersale="no dispute in /v1/ops/disputes")
    refund = _record("dashboard_refund", COMPLETED, aftersale="the order does not show refunded")
    unresolved = _record("refund_fail", COMPLETED, aftersale="no failed refund")
    leaked = _record("stolen", ("failed", "payment_declined"), leaked="stolen_card")
    retried = _record("decline_retry", COMPLETED, retried=202)
    not_retried = _record("decline_retry", ("expired", "payment_timeout"), retried=409)
    skipped = _record("dispute", ("failed", "payment_declined"))  # never paid: no step
    records = [fine, no_dispute, refund, unresolved, leaked, retried, not_retried, skipped]
    audit = Audit()
    check_aftersale(records, audit)
    flagged = " | ".join(audit.violations)
    assert len(audit.violations) == 5, flagged
    for record in (no_dispute, refund, unresolved, leaked, not_retried):
        assert str(record.checkout_id) in flagged
    assert audit.coverage == {"aftersale_dispute": 1}


def test_a_3ds_checkout_may_expire_only_when_its_approval_came_after_the_window() -> None:
    """A slow provider can hold the buyer's approval past CHECKOUT_PAYMENT_TIMEOUT: expiry is
    then the contract's answer. Approved within the window, an expiry is still a violation."""
    late = _record(
        "3ds", EXPIRED, approved=True, action_seen_s=100.0, approved_s=100.0 + PAYMENT_TIMEOUT_S + 9
    )
    in_time = _record("3ds", EXPIRED, approved=True, action_seen_s=100.0, approved_s=105.0)
    never = _record("3ds", EXPIRED)
    assert late.expected == frozenset({COMPLETED, EXPIRED})
    assert in_time.expected == never.expected == frozenset({COMPLETED})
    records = [late, in_time, never]
    audit = Audit()
    sessions = {r.checkout_id: _session(r) for r in records if r.checkout_id}
    check_clients(records, sessions, audit)  # type: ignore[arg-type]
    flagged = " | ".join(audit.violations)
    assert len(audit.violations) == 2, flagged
    assert str(late.checkout_id) not in flagged


def test_a_declined_card_retried_may_expire_only_when_a_provider_fault_met_it() -> None:
    """The payment window counts from the first authorization: a provider kept away by a fault
    can answer the decline, or the new method, only after it ends. Without one, expired is still
    a violation, and so is a retry that was never accepted."""
    kept_away = _record("decline_retry", EXPIRED, faults_met=frozenset({"psp-down"}))
    other_fault = _record("decline_retry", EXPIRED, faults_met=frozenset({"kill:api"}))
    no_fault = _record("decline_retry", EXPIRED, retried=409)
    slow_visa = _record("visa", EXPIRED, faults_met=frozenset({"psp-slow"}))
    assert kept_away.expected == frozenset({COMPLETED, EXPIRED})
    assert other_fault.expected == no_fault.expected == frozenset({COMPLETED})
    assert slow_visa.expected == frozenset({COMPLETED})
    records = [kept_away, other_fault, no_fault, slow_visa]
    audit = Audit()
    check_clients(records, {r.checkout_id: _session(r) for r in records}, audit)  # type: ignore[misc]
    check_aftersale(records, audit)
    flagged = " | ".join(audit.violations)
    assert str(kept_away.checkout_id) not in flagged
    for record in (other_fault, no_fault, slow_visa):
        assert str(record.checkout_id) in flagged


def test_a_record_meets_the_faults_in_effect_during_its_life() -> None:
    faults = [
        FaultResult(catalog()["psp-down"], injected_s=10.0, ended_s=40.0, recovered_s=45.0),
        FaultResult(catalog()["kill:api"], injected_s=60.0, ended_s=60.0, recovered_s=63.0),
    ]
    before = _record("visa", COMPLETED, started_s=1.0, ended_s=9.0)
    during = _record("visa", COMPLETED, started_s=1.0, ended_s=12.0)
    after_recovery = _record("visa", COMPLETED, started_s=44.0, ended_s=50.0)
    unfinished = _record("visa", COMPLETED, started_s=50.0)
    never_started = _record("visa", COMPLETED)
    mark_faults([before, during, after_recovery, unfinished, never_started], faults)
    assert before.faults_met == frozenset()
    assert during.faults_met == frozenset({"psp-down"})
    assert after_recovery.faults_met == frozenset({"psp-down"})
    assert unfinished.faults_met == frozenset({"kill:api"})
    assert never_started.faults_met == frozenset()


def test_a_buyers_order_cancel_must_show_on_the_order() -> None:
    assert SCENARIOS["order_cancel"].expect == frozenset({COMPLETED})
    assert SCENARIOS["order_cancel"].after == "order_cancel"
    assert not SCENARIOS["order_cancel"].cancellable  # the checkout itself runs to its end
    cancelled = _record("order_cancel", COMPLETED, aftersale="ok", order_cancel="cancelled")
    shipped = _record("order_cancel", COMPLETED, aftersale="ok", order_cancel="already_shipped")
    not_shown = _record(
        "order_cancel",
        COMPLETED,
        aftersale="cancel answered cancelled, the order is still ['fulfilling']",
        order_cancel="cancelled",
    )
    refused = _record("order_cancel", COMPLETED, aftersale="the order's cancel answered 409 x")
    audit = Audit()
    check_aftersale([cancelled, shipped, not_shown, refused], audit)
    flagged = " | ".join(audit.violations)
    assert len(audit.violations) == 2, flagged
    assert str(not_shown.checkout_id) in flagged
    assert str(refused.checkout_id) in flagged
    assert audit.coverage == {
        "aftersale_order_cancel": 2,
        "order_cancel_cancelled": 1,
        "order_cancel_already_shipped": 1,
    }


def _order(shipping: str, tax: str, *lines: tuple[str, int, str, str, str]) -> dict[str, object]:
    """An order as the API shows it: lines of (id, quantity, total, discount, tax)."""
    return {
        "shipping_amount": shipping,
        "tax_amount": tax,
        "items": [
            {"id": i, "quantity": q, "total_price": t, "discount_amount": d, "tax_amount": x}
            for i, q, t, d, x in lines
        ],
    }


def test_a_returns_share_is_computed_from_the_order_alone() -> None:
    # 30.00 x 2 and 10.00 x 1 with an 8.00 discount: 6.86 and 1.14 of it.
    two_lines = _order(
        "0.00", "0.00", ("shirt", 2, "60.00", "6.86", "0"), ("socks", 1, "10", "1.14", "0")
    )
    assert return_share(two_lines, "socks", 1) == Decimal("8.86")  # the whole line, no shipping
    assert return_share(two_lines, "shirt", 1) == Decimal("26.57")  # 53.14 / 2, half up
    # 10.00 and its 1.00 of tax over 3 units: 3.67 for one, 7.33 for two (half up); all three
    # take the whole 11.00.
    thirds = _order("5.00", "1.50", ("a", 3, "10.00", "0.00", "1.00"))
    assert return_share(thirds, "a", 1) == Decimal("3.67")  # 11.00 / 3
    assert return_share(thirds, "a", 2) == Decimal("7.33")
    # Every unit of the order back: the shipping and its tax (1.50 - 1.00) too.
    assert return_share(thirds, "a", 3) == Decimal("11.00") + Decimal("5.00") + Decimal("0.50")


def test_money_back_scenarios_pay_a_shipping_rate_and_expect_completion() -> None:
    for name in ("shipping_rate", "ops_refund", "ops_refund_fail", "return"):
        assert SCENARIOS[name].expect == frozenset({COMPLETED}), name
        assert SCENARIOS[name].weight > 0
    assert SCENARIOS["ops_refund_fail"].method == "pm_card_refundFail"
    assert SCENARIOS["return"].coupon == "discount"
    assert SCENARIOS["return"].shipping
    assert SCENARIOS["shipping_rate"].shipping
    chosen = Plan(0, SCENARIOS["return"], 0.0, buyer=Buyer("u", {}, "c"), rate_id="r-1")
    assert chosen.body()["shipping_rate_id"] == "r-1"
    assert chosen.body()["shipping_address"]["state"] == "CA"  # taxed: invariant 13 with tax
    assert "shipping_rate_id" not in Plan(0, SCENARIOS["visa"], 0.0, buyer=chosen.buyer).body()


def test_the_audit_counts_the_paths_of_refunds_and_returns() -> None:
    refunded = _record("ops_refund", COMPLETED, aftersale="ok", paths=["ops_refund_replayed"])
    returned = _record("return", COMPLETED, aftersale="ok", paths=["return_approved"])
    wrong = _record("return", COMPLETED, aftersale="the return's refund_amount is 9.00, ...")
    audit = Audit()
    check_aftersale([refunded, returned, wrong], audit)
    assert len(audit.violations) == 1
    assert str(wrong.checkout_id) in audit.violations[0]
    assert audit.coverage == {
        "aftersale_ops_refund": 1,
        "aftersale_return": 1,
        "ops_refund_replayed": 1,
        "return_approved": 1,
    }


class _Listing:
    """The operators' returns list of a fake API: these ids, whatever the status asked."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    async def send(self, method: str, url: str, **kwargs: object) -> Answer:
        return Answer(httpx.Response(200, json={"data": [{"id": i} for i in self.ids]}), False, 1)


async def test_a_return_left_waiting_is_a_violation_unless_abandoned_and_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = [{"id": "left", "status": "requested"}, {"id": "stuck", "status": "approved"}]
    hidden = [{"id": "hidden", "status": "requested"}]

    async def rows(db: object, sql: str, **params: object) -> list[dict[str, str]]:
        assert params["open"] == ["requested", "approved", "received", "needs_attention"]
        return waiting + hidden

    monkeypatch.setattr("tools.chaos.audit.rows", rows)
    records = [
        _record("return", COMPLETED, abandoned_return="left"),
        _record("return", COMPLETED, abandoned_return="hidden"),
    ]
    audit = Audit()
    catalog = Catalog({}, [], "FREE")
    await check_returns(_Listing(["left"]), catalog, object(), records, audit)  # type: ignore[arg-type]
    assert len(audit.violations) == 2, audit.violations
    assert "return stuck still approved" in audit.violations[0]
    # The settling wait leaves their workflows out: they never end on their own.
    left = str(uuid.uuid4())
    assert abandoned_workflows([_record("return", COMPLETED)]) == frozenset()
    assert abandoned_workflows([_record("return", COMPLETED, abandoned_return=left)]) == {
        f"return-{left}"
    }
    assert "hidden" in audit.violations[1]
    assert "hides it" in audit.violations[1]


async def test_the_report_counts_orders_with_shipping_and_tax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def rows(db: object, sql: str, **params: object) -> list[dict[str, int]]:
        return [{"shipping": 12, "tax": 0}]

    monkeypatch.setattr("tools.chaos.audit.rows", rows)
    audit = Audit()
    await count_whole_prices(object(), audit)  # type: ignore[arg-type]
    assert audit.coverage == {"orders_with_shipping": 12}


def test_a_shipment_meets_a_carrier_fault_when_its_step_overlaps_it() -> None:
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    fault = FaultResult(catalog()["carrier-down"], injected_s=0.0, injected_at=at)
    fault.ended_at = at + timedelta(seconds=30)

    def step(start_s: float, end_s: float) -> dict[str, datetime]:
        return {
            "started_at": at + timedelta(seconds=start_s),
            "updated_at": at + timedelta(seconds=end_s),
        }

    assert _met(step(-5, 40), fault)  # bought through the whole outage
    assert _met(step(10, 12), fault)
    assert _met(step(-2, 1), fault)
    assert not _met(step(-10, -1), fault)
    assert not _met(step(31, 32), fault)
    fault.ended_at = None  # not lifted (yet): in effect since its injection
    assert _met(step(100, 101), fault)


CARRIER_KEY = "EZTKchaospartstestkey0123456789"
ADDRESS_TO = {"street1": "1 Navy Yard", "city": "Arlington", "zip": "22202", "country": "US"}


class _OneSandbox:
    """What the injector needs of a stack, for a sandbox alone."""

    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.psp_url = url

    def pid(self, name: str) -> int:
        assert name == "sandbox"
        assert self.process.pid is not None
        return self.process.pid

    def children(self) -> dict[str, Child]:
        return {"sandbox": Child("sandbox", self.process.pid, 0, True)}


@contextmanager
def _sandbox(tmp_path: Path, **env: str) -> Iterator[tuple[ManagedProcess, str]]:
    """A sandbox of its own (the carrier's API key known, webhooks recorded but not sent) and
    its URL, stopped afterwards."""
    port = free_port()
    process = sandbox_process(
        port=port,
        db_path=tmp_path / "psp.sqlite",
        webhook_url="",
        log_dir=tmp_path,
        extra_env={"EASYPOST_API_KEY": CARRIER_KEY, **env},
    )
    process.start()
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def test_a_carrier_fault_switches_the_sandbox_for_its_hold_then_back(
    tmp_path: Path,
) -> None:
    with _sandbox(tmp_path) as (process, url):
        stack = _OneSandbox(process, url)
        injector = Injector(stack, RequestLog(), timeout_s=10)  # type: ignore[arg-type]
        fault = catalog(carrier_down_s=1.5)["carrier-down"]
        carrier = EasyPostClient(CARRIER_KEY, api_base=f"{url}/v2", timeout=5)

        def ship() -> object:
            return carrier.shipment.create(
                to_address=ADDRESS_TO, from_address=ADDRESS_TO, parcel={"weight": 10.0}
            )

        injected = asyncio.ensure_future(injector.inject(fault))
        await asyncio.sleep(0.7)
        with pytest.raises(ServiceUnavailableError):
            await asyncio.to_thread(ship)
        result = await injected
        assert await asyncio.to_thread(ship)  # switched back
        assert result.ended_at is not None
        assert (result.ended_at - result.injected_at).total_seconds() >= 1.5
        assert result.pids == (process.pid, process.pid)


async def test_the_platform_is_not_quiet_while_the_carrier_still_moves_a_parcel(
    tmp_path: Path,
) -> None:
    # A chaos run once audited the outboxes 7 s after "nothing in flight": a parcel bought at
    # the end of the load moved on meanwhile, its tracker.updated made the shipping domain
    # write shipment.delivered, and the audit caught that row in the 50 ms before its relay
    # published it ("shipping: 1 outbox rows never published"). The provider's own scheduled
    # transitions are in flight too, until the last one has fired.
    step_s = 0.5
    with _sandbox(tmp_path, SANDBOX_CARRIER_STEP_S=str(step_s)) as (_, url):
        assert await provider_timers(url) == {}
        carrier = EasyPostClient(CARRIER_KEY, api_base=f"{url}/v2", timeout=5)

        def ship() -> str:
            shipment = carrier.shipment.create(
                to_address=ADDRESS_TO, from_address=ADDRESS_TO, parcel={"weight": 10.0}
            )
            carrier.shipment.buy(shipment.id, rate=shipment.rates[0])
            return str(shipment.id)

        shipment_id = await asyncio.to_thread(ship)
        pending = await provider_timers(url)
        assert list(pending) == ["tracking"]
        assert 0 <= pending["tracking"] <= step_s
        for _ in range(100):  # three moves of 0.5 s, within 10 s under load
            if not await provider_timers(url):
                break
            await asyncio.sleep(0.1)
        assert await provider_timers(url) == {}
        # Quiet only once the parcel has made its last move: delivered.
        delivered = await asyncio.to_thread(carrier.shipment.retrieve, shipment_id)
        assert delivered.tracker.status == "delivered"


def test_a_race_must_sell_exactly_what_there_is() -> None:
    def race(won: int, lost: int) -> list[Record]:
        members = [_record("scarce_stock", ("completed", None)) for _ in range(won)]
        members += [_record("scarce_stock", ("failed", "out_of_stock")) for _ in range(lost)]
        for member in members:
            member.plan.group = "scarce_stock-1"
        return members

    catalog = Catalog({}, [], "FREE", capacity={"scarce_stock-1": 3})
    for won, lost, violations in ((3, 7, 0), (4, 6, 1), (2, 8, 1), (2, 0, 0)):
        audit = Audit()
        check_races(race(won, lost), catalog, audit)
        assert len(audit.violations) == violations, (won, lost, audit.violations)


def test_what_each_ending_tells_the_buyer() -> None:
    paid = _expected_notifications({"status": "completed", "total_amount": Decimal("12.50")})
    assert paid["order_confirmed"] == paid["shipment_created"] == paid["payment_captured"] == (1, 1)
    assert paid["checkout_failed"] == (0, 0)
    free = _expected_notifications({"status": "completed", "total_amount": Decimal("0")})
    assert free["payment_captured"] == (0, 0)
    assert _expected_notifications({"status": "failed", "total_amount": None})[
        "checkout_failed"
    ] == (1, 1)
    expired = _expected_notifications({"status": "expired", "total_amount": None})
    assert expired["checkout_expired"] == (1, 1)
    assert expired["checkout_failed"] == (0, 0)
    cancelled = _expected_notifications({"status": "cancelled", "total_amount": Decimal("5")})
    assert cancelled["checkout_failed"] == cancelled["checkout_expired"] == (0, 0)
    assert cancelled["order_confirmed"] == (0, 1)


def test_deliveries_are_counted_from_the_senders_log(tmp_path: Path) -> None:
    log = tmp_path / "relays.log"
    sent = '{{"notification_id": "{}", "event": "notifications.sent", "level": "info"}}\n'
    log.write_text(
        sent.format("a")
        + '{"event": "relay.started"}\n'
        + sent.format("b")
        + sent.format("a")
        + '{"notification_id": "c", "event": "notifications.se'  # cut short by a SIGKILL
    )
    assert _sends(log) == Counter({"a": 2, "b": 1})
    assert _sends(tmp_path / "missing.log") == Counter()


# -- the report ------------------------------------------------------------------------------------


def test_latencies_split_what_started_during_a_fault() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.99) == 99.0
    outcome = Outcome(ChaosConfig(), 1.0, Path("/nonexistent"))
    quick = _record("visa", ("completed", None), started_s=1.0, accepted_s=1.1, ended_s=2.0)
    slow = _record("visa", ("completed", None), started_s=10.0, accepted_s=15.0, ended_s=30.0)
    outcome.records = [quick, slow]
    outcome.faults = [FaultResult(catalog()["kill:api"], injected_s=9.0, recovered_s=16.0)]
    figures = latencies(outcome)
    assert figures["accept"]["n"] == 2
    assert figures["accept_during_faults"] == {"n": 1, "p50": 5000.0, "p99": 5000.0}
    assert figures["end_to_end_during_faults"]["p50"] == 20000.0


# -- the soak's verdict ----------------------------------------------------------------------------


def _samples(rss: list[float], span_s: float = 1200.0) -> list[Sample]:
    step = span_s / (len(rss) - 1)
    return [Sample(i * step, i, rss_mb={"api": v}, fds={"api": 40}) for i, v in enumerate(rss)]


def test_the_soak_fails_on_growth_and_not_on_a_plateau() -> None:
    assert slope_per_hour([(0.0, 0.0), (1800.0, 50.0), (3600.0, 100.0)]) == pytest.approx(100.0)
    judged, failures = judge(_samples([100, 150, 160, 162, 161, 163, 162, 161, 162, 163]))
    assert judged
    assert failures == []
    judged, failures = judge(_samples([100, 110, 120, 130, 140, 150, 160, 170, 180, 190]))
    assert judged
    assert len(failures) == 1
    assert failures[0].startswith("rss_mb:api grows")
    judged, failures = judge(_samples([100, 200, 300, 400], span_s=120))
    assert not judged
    assert failures == []
    runaway = _samples([100, 100, 100, 100], span_s=120)
    runaway[-1].history_max = 5000
    assert judge(runaway)[1] == ["a checkout's history reached 5000 events (limit 2000)"]


# -- the supervisor's stack.json -------------------------------------------------------------------


def test_the_supervisor_writes_each_childs_pid_and_restarts(tmp_path: Path) -> None:
    state = tmp_path / "stack.json"
    policy = RestartPolicy(
        initial_s=0.05, max_s=0.2, stable_after_s=30, max_restarts=5, window_s=30
    )
    supervisor = Supervisor(policy, on_change=lambda children: write_state(state, children))
    child = ManagedProcess(
        name="sleeper",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "sleeper.log",
        ready=lambda: True,
        stop_timeout=5,
    )
    try:
        supervisor.start(child)
        first = json.loads(state.read_text())
        assert first["pid"] == os.getpid()
        assert first["children"] == [
            {"name": "sleeper", "pid": child.pid, "restarts": 0, "running": True}
        ]
        killed = child.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while json.loads(state.read_text())["children"][0]["restarts"] < 1:
            assert time.monotonic() < deadline, "no restart recorded"
            supervisor.check()
            time.sleep(0.02)
        (after,) = json.loads(state.read_text())["children"]
        assert after == {"name": "sleeper", "pid": child.pid, "restarts": 1, "running": True}
        assert after["pid"] != killed
    finally:
        supervisor.stop()


def test_a_rolling_restart_drains_every_worker_process_one_at_a_time() -> None:
    two = schedule("rolling", replicas=2)
    assert [f.target for f in two[:2]] == [
        f"worker-{WORKER_DOMAINS[0]}-1",
        f"worker-{WORKER_DOMAINS[0]}-2",
    ]
    assert len(two) == 2 * len(WORKER_DOMAINS)
    assert {f.kind for f in two} == {TERM}
    assert {f.family for f in two} == {"term:worker"}
    assert [f.target for f in schedule("rolling")] == [f"worker-{d}" for d in WORKER_DOMAINS]
