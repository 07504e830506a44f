"""One buyer's checkout from start to end, as a client of the HTTP API does it.

Start with an Idempotency-Key (the same on every retry), poll the status with a growing interval,
complete 3-D Secure by visiting `payment.next_action.url` when the scenario says so, cancel when
the plan says so (the buyer at a random moment; an operator as soon as the status shows the
capture has started, else at a random moment), and record what was seen and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tools.chaos.client import GaveUp, PatientClient, RequestLog
from tools.chaos.workload import (
    CANCELLED,
    EXPIRED,
    PAYMENT_TIMEOUT_S,
    PROVIDER_FAULTS,
    Outcome,
    Plan,
)

FINAL = frozenset({"completed", "failed", "cancelled", "expired"})
NEEDS_ATTENTION = "needs_attention"
# Steps from the pivot on: an operator's cancel there refunds the captured payment.
AFTER_CAPTURE = frozenset(
    {
        "capture_payment",
        "commit_inventory",
        "confirm_coupon",
        "confirm_order",
        "create_shipment",
        "complete",
    }
)
# Payment statuses around the pivot: authorized (the capture comes next) or captured.
PIVOT_PAYMENT = frozenset({"authorized", "captured"})
# Steps just before the pivot: an operator waiting for the capture polls fast from there.
NEAR_CAPTURE = frozenset({"authorize_payment", "awaiting_payment"}) | AFTER_CAPTURE
# Status polling: 0.25 s growing by half up to 5 s (with jitter), as a client that does not want
# to hammer the API (a poll of a running checkout may cost the platform a workflow query). An
# operator waiting for the capture to start polls every 0.2 s, every 50 ms from the authorization.
POLL_INITIAL_S, POLL_MAX_S = 0.25, 5.0
POLL_WATCH_S, POLL_FAST_S = 0.2, 0.05
REQUIRES_PAYMENT_METHOD = "requires_payment_method"
# Words of a decline's reason that must never reach the buyer (a generic decline hides them).
SECRET_REASONS = ("lost", "stolen", "fraud")


def leaked_reason(body: dict[str, Any]) -> str | None:
    """The reason of a lost, stolen or fraudulent decline, if the status shows it to the buyer
    (in the failure or in the payment's last error)."""
    shown = [body.get("failure") or {}, (body.get("payment") or {}).get("last_error") or {}]
    for part in shown:
        for value in part.values():
            if isinstance(value, str) and any(w in value.lower() for w in SECRET_REASONS):
                return value
    return None


@dataclass
class Record:
    """What one checkout's client saw (times in seconds since the run's origin)."""

    plan: Plan
    key: str = field(default_factory=lambda: f"chaos-{uuid.uuid4()}")
    checkout_id: str | None = None
    started_s: float | None = None
    accepted_s: float | None = None
    ended_s: float | None = None
    status: str | None = None
    step: str | None = None
    code: str | None = None
    total: str | None = None
    approved: bool = False
    # When the client first saw the 3-D Secure page offered, and when the page answered it.
    action_seen_s: float | None = None
    approved_s: float | None = None
    cancel_answer: int | None = None  # HTTP status of the cancel (202 or 409)
    cancel_code: str | None = None
    cancel_ambiguous: bool = False  # an earlier attempt of the cancel may have been applied
    error: str | None = None  # the client's own trouble: start refused, gave up, never ended
    cancel_money: str | None = None  # an operator's 202 cancel: what became of the money
    retried: int | None = None  # HTTP status of `POST .../payment` (on_decline: retry)
    order_id: str | None = None
    leaked: str | None = None  # a generic decline's reason, if the buyer was shown it
    aftersale: str | None = None  # the after-sale step: "ok", or what went wrong
    dashboard_refunded: str | None = None  # what the dashboard refund gave back
    order_cancel: str | None = None  # the buyer's order cancel: "cancelled" or "already_shipped"
    # The paths an after-sale step took (counted in the report: "return_rejected", ...).
    paths: list[str] = field(default_factory=list)
    abandoned_return: str | None = None  # a return the journey left waiting on purpose
    # The faults in effect at some moment of the checkout's life (set after the load).
    faults_met: frozenset[str] = frozenset()

    @property
    def outcome(self) -> Outcome | None:
        """(status, failure code) once ended."""
        return (self.status, self.code) if self.status in FINAL else None

    @property
    def expected(self) -> frozenset[Outcome]:
        """The outcomes the contract allows this checkout, given how its cancel was answered."""
        if self.cancel_answer == 202:
            return frozenset({CANCELLED})
        expect = self.plan.scenario.expect
        if self.approved_late or self.retry_outlived:
            expect |= {EXPIRED}
        if self.cancel_ambiguous:
            return expect | {CANCELLED}
        return expect

    @property
    def retry_outlived(self) -> bool:
        """A declined card to be retried met a provider fault: the decline, or the new method's
        answer, may have come only after the payment window (counted from the first
        authorization), and the checkout rightly expired, everything released."""
        return bool(self.plan.scenario.retry_with and self.faults_met & PROVIDER_FAULTS)

    @property
    def approved_late(self) -> bool:
        """The buyer's 3-D Secure approval reached the provider only after the payment window
        (counted from when the page was first offered, which is after the window opened): the
        checkout may rightly have expired (a slow or stopped provider held the approval)."""
        if self.action_seen_s is None or self.approved_s is None:
            return False
        return self.approved_s - self.action_seen_s > PAYMENT_TIMEOUT_S


class Journey:
    """Drives one `Plan` through the API and fills its `Record`."""

    def __init__(
        self,
        api: PatientClient,
        record: Record,
        *,
        operator: dict[str, str],
        settle_timeout_s: float,
        rng: random.Random,
        gate: asyncio.Semaphore | None = None,
        turn: Callable[[], Awaitable[None]] | None = None,
        after: Callable[[Record], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        # Held from the start to the end of the checkout: at most so many in flight.
        self.gate = gate
        # Awaited before the start (the load waits for the faults to keep up with it).
        self.turn = turn
        self.record = record
        self.operator_headers = operator
        self.requests: RequestLog = api.requests
        self.settle_timeout_s = settle_timeout_s
        self.rng = rng
        # The after-sale step of the scenario, once the checkout ended (outside the gate).
        self.after = after

    async def run(self) -> Record:
        """Start at the plan's time, follow to the end; never raises (errors are recorded)."""
        record = self.record
        await asyncio.sleep(max(0.0, record.plan.at_s - self.requests.now()))
        if self.turn is not None:
            await self.turn()
        try:
            async with self.gate or contextlib.nullcontext():
                if await self._start():
                    await self._follow()
            if self.after is not None and record.plan.scenario.after and record.outcome:
                await self.after(record)
        except GaveUp as exc:
            record.error = f"gave up: {exc}"
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        return record

    async def _start(self) -> bool:
        record, plan = self.record, self.record.plan
        assert plan.buyer is not None
        record.started_s = self.requests.now()
        if plan.scenario.shipping and plan.rate_id is None:
            plan.rate_id = await self._shipping_rate()
        answer = await self.api.send(
            "POST",
            "/v1/checkouts",
            json=plan.body(),
            headers={**plan.buyer.headers, "Idempotency-Key": record.key},
        )
        response = answer.response
        if response.status_code != 202:
            record.error = f"start answered {response.status_code}: {response.text[:200]}"
            return False
        record.checkout_id = response.json()["checkout_id"]
        record.accepted_s = self.requests.now()
        return True

    async def _shipping_rate(self) -> str:
        """A rate of the cart's quotes, chosen at random (they are valid for minutes)."""
        plan = self.record.plan
        assert plan.buyer is not None
        answer = await self.api.send(
            "POST",
            f"/v1/carts/{plan.buyer.cart_id}/shipping-rates",
            json={"shipping_address": plan.scenario.address},
            headers=plan.buyer.headers,
        )
        if answer.response.status_code != 200:
            raise RuntimeError(f"shipping rates answered {answer.response.status_code}")
        rates: list[dict[str, Any]] = answer.response.json()["rates"]
        chosen: str = self.rng.choice(rates)["id"]
        return chosen

    async def _status(self) -> dict[str, Any]:
        assert self.record.plan.buyer is not None
        answer = await self.api.send(
            "GET",
            f"/v1/checkouts/{self.record.checkout_id}",
            headers=self.record.plan.buyer.headers,
        )
        if answer.response.status_code != 200:
            raise RuntimeError(f"status answered {answer.response.status_code}")
        body: dict[str, Any] = answer.response.json()
        return body

    async def _follow(self) -> None:
        record, plan = self.record, self.record.plan
        assert record.accepted_s is not None
        deadline = record.accepted_s + self.settle_timeout_s
        delay = POLL_INITIAL_S
        while True:
            body = await self._status()
            record.status, record.step = body["status"], body["step"]
            if record.status in FINAL or record.step == NEEDS_ATTENTION:
                self._ended(body)
                return
            await self._act(body)
            if self.requests.now() > deadline:
                record.error = f"not ended after {self.settle_timeout_s:.0f}s ({record.step})"
                return
            if plan.cancel == "operator" and record.cancel_answer is None:
                # Watching for the capture to start: the window until the end is short.
                await asyncio.sleep(POLL_FAST_S if record.step in NEAR_CAPTURE else POLL_WATCH_S)
            elif plan.scenario.after == "order_cancel" and record.step in AFTER_CAPTURE:
                # The buyer means to cancel the order: watching for the checkout's end.
                await asyncio.sleep(POLL_WATCH_S)
            else:
                await asyncio.sleep(delay * self.rng.uniform(0.8, 1.2))
                delay = min(POLL_MAX_S, delay * 1.5)

    def _ended(self, body: dict[str, Any]) -> None:
        record = self.record
        record.ended_s = self.requests.now()
        record.code = (body.get("failure") or {}).get("code")
        record.total = (body.get("order") or {}).get("total_amount")
        record.order_id = (body.get("order") or {}).get("id")
        if self.record.plan.scenario.generic:
            record.leaked = leaked_reason(body)

    async def _act(self, body: dict[str, Any]) -> None:
        """What the buyer or the operator does at this point of the checkout."""
        record, plan = self.record, self.record.plan
        if plan.scenario.retry_with and record.retried is None:
            if record.status == REQUIRES_PAYMENT_METHOD:
                await self._retry_payment(plan.scenario.retry_with)
        next_action = (body.get("payment") or {}).get("next_action") or {}
        if plan.scenario.approve and not record.approved and next_action.get("url"):
            if record.action_seen_s is None:
                record.action_seen_s = self.requests.now()
            await self._approve(next_action["url"])
        if record.cancel_answer is not None or not plan.cancel:
            return
        assert record.accepted_s is not None
        due = self.requests.now() >= record.accepted_s + plan.cancel_after_s
        if plan.cancel == "buyer" and due:
            await self._cancel(f"/v1/checkouts/{record.checkout_id}/cancel", operator=False)
        elif plan.cancel == "operator" and (due or self._at_the_pivot(body)):
            await self._cancel(f"/v1/ops/checkouts/{record.checkout_id}/cancel", operator=True)

    def _at_the_pivot(self, body: dict[str, Any]) -> bool:
        """The status shows the capture about to start or started (authorized or captured, or a
        step from the capture on): an operator's cancel now most likely refunds."""
        payment = (body.get("payment") or {}).get("status")
        return payment in PIVOT_PAYMENT or self.record.step in AFTER_CAPTURE

    async def _approve(self, url: str) -> None:
        """The buyer's browser visits the 3-D Secure page (the sandbox approves or fails it)."""
        answer = await self.api.send("GET", url, headers={"Accept": "application/json"})
        if answer.response.status_code != 200:
            raise RuntimeError(f"3-D Secure page answered {answer.response.status_code}")
        self.record.approved, self.record.approved_s = True, self.requests.now()

    async def _retry_payment(self, method: str) -> None:
        """The buyer's card was declined: pay with another (once, one Idempotency-Key)."""
        record, plan = self.record, self.record.plan
        assert plan.buyer is not None
        answer = await self.api.send(
            "POST",
            f"/v1/checkouts/{record.checkout_id}/payment",
            json={"payment": {"provider": "stripe", "payment_method": method}},
            headers={**plan.buyer.headers, "Idempotency-Key": f"{record.key}-retry"},
        )
        record.retried = answer.response.status_code
        if record.retried not in (202, 409):
            raise RuntimeError(f"payment retry answered {record.retried}: {answer.response.text}")

    async def _cancel(self, path: str, *, operator: bool) -> None:
        record, plan = self.record, self.record.plan
        assert plan.buyer is not None
        headers = self.operator_headers if operator else plan.buyer.headers
        answer = await self.api.send("POST", path, headers=headers)
        response = answer.response
        if response.status_code not in (202, 409):
            raise RuntimeError(f"cancel answered {response.status_code}: {response.text[:200]}")
        record.cancel_answer = response.status_code
        record.cancel_ambiguous = answer.ambiguous
        if response.status_code == 409:
            record.cancel_code = response.json().get("code")
        elif operator:
            record.cancel_money = response.json().get("money")
