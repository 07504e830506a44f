"""Stateful property: money and stock after the sale, with everything interleaved at random.

A hypothesis `RuleBasedStateMachine` over a few completed checkouts (some paid with
`pm_card_refundFail`, whose refunds fail at the card network a moment after they are made). In
any order: the carrier moves a parcel on (its tracking events reach the platform through the
sandbox), the buyer or an operator cancels the order (`POST /v1/orders/{id}/cancel`: 202 while the
carrier does not have the parcel, 409 `already_shipped` once it does), someone refunds part, the
rest or too much in the provider's dashboard (the Stripe SDK against the sandbox), an operator
refunds part of an order (`POST /v1/ops/orders/{id}/refunds`, replayed under its key, 422
`refund_exceeds_captured` beyond what is left), an operator retries or resolves a failed refund
from `GET /v1/ops/refunds/failed`, the buyer returns units of a delivered order and an operator
approves, rejects or receives them (restocked or not), and the provider delivers one of its
events again. A step may wait for the platform to catch up, or not. Operator refunds and returns
are left out where the platform does not offer them.

After every step what holds even while events are on their way holds (neither the ledger nor the
payments database refunds more than was captured, every refund has its status, stock is never
oversold nor restocked beyond what was sold), and each sale the platform has caught up with
(nothing in flight for it: its refunds and tracking recorded, its cancellation and returns done)
meets the invariants (docs/reference/invariants.md, money after the sale and returns among them)
and the model: a cancel accepted leaves the order `cancelled`, everything refunded (or the failed
refund owed and waiting for an operator) and its units back in stock once; a returned unit is
back in stock once, and only when received for restocking; the order shows what its succeeded
refunds gave back and follows its parcel until money went back; every failed refund not yet
retried or resolved is listed for operators, and no other. At the end of each example every sale
must catch up, and everything is checked again.

The machine's seed is printed; `STATEFUL_SEED=<n>` runs the same choices again (the platform's
timing still varies); `STATEFUL_EXAMPLES=<n>` runs more examples than CI's 3.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
import stripe
from hypothesis import HealthCheck, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from api.routers.aftersale import router as after_sale_routes
from api.services.webhooks import PAYMENT_EVENT_TYPES
from kit.money import Money
from sandbox.psp.signing import stripe_signature
from tests.api.conftest import Caller, caller
from tests.api.shop import Shop
from tests.platform import Platform
from tools.invariants import check_invariants

pytestmark = pytest.mark.timeout(900)

T = TypeVar("T")
Body = dict[str, Any]

VISA, REFUND_FAIL = "tok_visa", "pm_card_refundFail"
WEBHOOK = "/v1/webhooks/payments/stripe"
# Longest any one step may take before the run is declared stuck.
STEP_LIMIT_S = 120.0
# How long a sale may take to catch up once nothing more is done to it: a refund failing at the
# card network (two seconds in the sandbox), webhooks, a cancellation, a slow CI machine.
QUIET_WITHIN_S = 60.0
# The carrier's tracker, one `advance` at a time; the shipment and the order it should leave.
SHIPMENT_AT = ("label_created", "in_transit", "out_for_delivery", "delivered")
ORDER_AT = ("fulfilling", "shipped", "shipped", "delivered")
# The platform's servers close a connection idle for 5 s; a request sent on it just then fails.
# The clients let idle connections go sooner.
IDLE = httpx.Limits(keepalive_expiry=1.0)
# Operators refund part of an order (where the platform offers it).
OPERATOR_REFUNDS = any(
    getattr(route, "path", None) == "/v1/ops/orders/{order_id}/refunds"
    for route in after_sale_routes.routes
)
# Buyers return units of delivered orders (where the platform offers it).
RETURNS = importlib.util.find_spec("api.routers.returns") is not None
# Examples CI runs (about a minute on a loaded machine); STATEFUL_EXAMPLES runs more.
EXAMPLES = 3
# Stock each sale's variant starts with.
STOCK = 5
# Refunds at the card network: pending until they succeed or fail.
SETTLED = ("succeeded", "failed", "canceled")


@dataclass
class World:
    """What every example shares: the session's loop and platform, the API, the dashboard."""

    loop: asyncio.AbstractEventLoop
    platform: Platform
    http: httpx.AsyncClient
    sandbox: httpx.AsyncClient  # the sandbox's own endpoints (carrier helper, event log)
    operator: Caller
    dashboard: stripe.StripeClient
    stats: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the session's loop (the state machine runs in a thread)."""
        started = time.monotonic()
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(STEP_LIMIT_S)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"a step took more than {STEP_LIMIT_S:.0f}s") from None
        finally:
            # Time spent per kind of step (the rule's name, or the helper's).
            name = str(getattr(coroutine, "__qualname__", "?")).split(".<locals>")[0]
            self.seconds[name.split(".")[-1]] += time.monotonic() - started


@dataclass(eq=False)
class Return:
    """A return the platform accepted, and what the model knows of it."""

    id: str
    quantity: int
    status: str  # requested, approved, rejected, received
    restocked: int = 0  # units received for restocking


@dataclass(eq=False)
class Sale:
    """A completed checkout's order and what the model knows of it."""

    checkout_id: str
    order_id: str
    intent: str
    carrier_id: str
    variant: str
    quantity: int
    method: str
    captured: int  # minor units
    buyer: Caller
    step: int = 0  # index in SHIPMENT_AT of the carrier's tracker
    cancelled: bool = False  # a cancel answered 202
    refunds: int = 0  # dashboard and operator refunds accepted
    # Operator refunds accepted while the platform knew all there was to know (never rejected).
    exact: set[str] = field(default_factory=set)
    given: int = 0  # minor units those refunds asked for, while no cancellation raced them
    item: str = ""  # the order's one line
    returns: list[Return] = field(default_factory=list)

    @property
    def returnable(self) -> int:
        """Units no return (but a rejected one) asks for."""
        return self.quantity - sum(r.quantity for r in self.returns if r.status != "rejected")

    @property
    def restocked(self) -> int:
        """Units back in stock: a cancelled order's all, else what returns received to restock."""
        return self.quantity if self.cancelled else sum(r.restocked for r in self.returns)

    def __repr__(self) -> str:
        return f"Sale({self.order_id}, {self.method})"

    @property
    def fails(self) -> bool:
        """Whether its refunds fail at the card network."""
        return self.method == REFUND_FAIL


@dataclass
class Seen:
    """One sale as the platform and the provider hold it now."""

    order: Body  # GET /v1/orders/{id}
    payment: Body  # captured_amount, refunded_amount
    rows: list[Body]  # payment_refunds: provider_refund_id, amount, status, origin, resolution
    provider: list[Body]  # the provider's refunds of the intent
    amount_refunded: int  # the provider's, minor units
    stock: tuple[int, int]  # the variant's (total_stock, reserved)
    # Refunds asked of the platform (operators', returns'): id, amount, status, its provider's.
    requests: list[Body] = field(default_factory=list)
    returns: list[Body] = field(default_factory=list)  # GET /v1/orders/{id}/returns

    def minor(self, amount: Any) -> int:
        return Money.of(Decimal(str(amount)), self.order["currency"]).to_minor_units()

    @property
    def succeeded(self) -> int:
        """Minor units the provider's succeeded refunds gave back."""
        return sum(r["amount"] for r in self.provider if r["status"] == "succeeded")


def expected_order_status(sale: Sale, seen: Seen) -> str:
    """Cancelled once a cancel was accepted; (partially) refunded once money went back (the order
    then no longer follows its parcel); else where its parcel is."""
    if sale.cancelled:
        return "cancelled"
    if seen.succeeded >= sale.captured:
        return "refunded"
    if seen.succeeded > 0:
        return "partially_refunded"
    return ORDER_AT[sale.step]


def lagging(sale: Sale, seen: Seen) -> list[str]:
    """What the platform has still to learn about the sale (empty: nothing is in flight)."""
    behind = []
    if any(r["status"] not in SETTLED for r in seen.provider):
        behind.append("a refund is pending at the provider")
    if any(q["status"] == "requested" for q in seen.requests):
        behind.append(f"a refund request is not sent yet: {seen.requests}")
    for asked in seen.returns:
        # Received: its refund is under way; approved: its label is being bought.
        if asked["status"] == "received" or (asked["status"] == "approved" and not asked["label"]):
            behind.append(f"return {asked['id']} {asked['status']}")
    recorded = {(r["provider_refund_id"], r["status"]) for r in seen.rows}
    if recorded != {(r["id"], r["status"]) for r in seen.provider}:
        behind.append(f"refunds recorded {sorted(recorded)}, provider {seen.provider}")
    if seen.minor(seen.payment["refunded_amount"]) != seen.amount_refunded:
        behind.append(f"payment refunded {seen.payment}, provider {seen.amount_refunded}")
    if seen.minor(seen.order["refunded_amount"]) != min(seen.succeeded, sale.captured):
        behind.append(f"order refunded {seen.order['refunded_amount']}, {seen.succeeded=}")
    shipment = "cancelled" if sale.cancelled else SHIPMENT_AT[sale.step]
    if [s["status"] for s in seen.order["shipments"]] != [shipment]:
        behind.append(f"shipments {[s['status'] for s in seen.order['shipments']]}, {shipment}")
    status = expected_order_status(sale, seen)
    if seen.order["status"] != status:
        behind.append(f"order {seen.order['status']}, expected {status}")
    return behind


class AfterSaleMachine(RuleBasedStateMachine):
    """Buyers, the carrier, the dashboard and operators acting on completed sales."""

    sales = Bundle[Sale]("sales")

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.all: list[Sale] = []
        self.checked: dict[str, Seen] = {}  # each sale as last checked against the invariants
        self.buyer = caller(world.platform, "customer")

    # -- reading the platform -------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        return self.world.http

    async def _rows(self, domain: str, sql: str, **params: Any) -> list[Body]:
        async with self.world.platform.databases[domain].begin() as session:
            result = await session.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def _order(self, sale: Sale) -> Body:
        answer = await self.http.get(f"/v1/orders/{sale.order_id}", headers=sale.buyer.headers)
        assert answer.status_code == 200, answer.text
        body: Body = answer.json()
        return body

    async def _stock(self, variant: str) -> tuple[int, int]:
        (row,) = await self._rows(
            "inventory",
            "SELECT total_stock, reserved FROM inventory_items WHERE variant_id = :v",
            v=uuid.UUID(variant),
        )
        return int(row["total_stock"]), int(row["reserved"])

    async def _seen(self, sale: Sale) -> Seen:
        """The sale now: the provider first, then the platform (which may only lag behind it)."""
        intent = await self.world.dashboard.v1.payment_intents.retrieve_async(
            sale.intent, {"expand": ["latest_charge"]}
        )
        charge = intent.latest_charge
        assert isinstance(charge, stripe.Charge), f"{sale}: no charge {intent}"
        listed = charge.refunds.data if charge.refunds else []
        checkout_id = uuid.UUID(sale.checkout_id)
        payments, rows, order, stock, requests, returns = await asyncio.gather(
            self._rows(
                "payments",
                "SELECT captured_amount, refunded_amount FROM payments WHERE checkout_id = :c",
                c=checkout_id,
            ),
            self._rows(
                "payments",
                "SELECT r.id::text AS id, r.provider_refund_id, r.amount, r.status, r.origin, "
                "r.resolution FROM payment_refunds r JOIN payments p ON p.id = r.payment_id "
                "WHERE p.checkout_id = :c ORDER BY r.created_at",
                c=checkout_id,
            ),
            self._order(sale),
            self._stock(sale.variant),
            self._requests(checkout_id),
            self._returns(sale),
        )
        (payment,) = payments
        return Seen(
            order=order,
            payment=payment,
            rows=rows,
            provider=[{"id": r.id, "amount": r.amount, "status": r.status} for r in listed],
            amount_refunded=charge.amount_refunded,
            stock=stock,
            requests=requests,
            returns=returns,
        )

    async def _returns(self, sale: Sale) -> list[Body]:
        if not RETURNS:
            return []
        answer = await self.http.get(
            f"/v1/orders/{sale.order_id}/returns", headers=sale.buyer.headers
        )
        assert answer.status_code == 200, answer.text
        found: list[Body] = answer.json()["data"]
        return found

    async def _requests(self, checkout_id: uuid.UUID) -> list[Body]:
        if not OPERATOR_REFUNDS:
            return []
        return await self._rows(
            "payments",
            "SELECT q.id::text AS id, q.amount, q.status, r.status AS refund_status "
            "FROM payment_refund_requests q JOIN payments p ON p.id = q.payment_id "
            "LEFT JOIN payment_refunds r ON r.provider_refund_id = q.provider_refund_id "
            "WHERE p.checkout_id = :c ORDER BY q.created_at",
            c=checkout_id,
        )

    async def _waiting(self) -> dict[str, Body]:
        """The failed refunds operators see waiting, by id."""
        answer = await self.http.get(
            "/v1/ops/refunds/failed", params={"limit": 500}, headers=self.world.operator.headers
        )
        assert answer.status_code == 200, answer.text
        return {r["id"]: r for r in answer.json()["data"]}

    async def _quiet(self, sale: Sale, within_s: float) -> Seen | None:
        """The sale once the platform has caught up with it (None: not within `within_s`)."""
        deadline = time.monotonic() + within_s
        while True:
            seen = await self._seen(sale)
            behind = lagging(sale, seen)
            if not behind:
                return seen
            if time.monotonic() >= deadline:
                note(f"{sale} still in flight: {behind}")
                return None
            await asyncio.sleep(0.2)

    # -- setting up -----------------------------------------------------------------------------

    async def _sell(self, shop: Shop, method: str, quantity: int, price: str) -> Sale:
        variant = await shop.variant(price=price, stock=STOCK)
        checkout_id = await shop.checkout(await shop.cart((variant, quantity)), token=method)
        body = await shop.wait(checkout_id, within_s=QUIET_WITHIN_S)
        assert body["status"] == "completed", body
        (ledger,) = await self.world.platform.ledger(uuid.UUID(checkout_id))
        order_id = str(body["order"]["id"])
        (shipment,) = await self._rows(
            "shipping",
            "SELECT carrier_shipment_id FROM shipments WHERE order_id = :o",
            o=uuid.UUID(order_id),
        )
        sale = Sale(
            checkout_id=checkout_id,
            order_id=order_id,
            intent=ledger["payment_intent"],
            carrier_id=shipment["carrier_shipment_id"],
            variant=variant,
            quantity=quantity,
            method=method,
            captured=int(ledger["captured"]),
            buyer=self.buyer,
        )
        (line,) = (await self._order(sale))["items"]
        sale.item = line["id"]
        assert await self._stock(variant) == (STOCK - quantity, 0), f"{sale}: stock"
        return sale

    @initialize(
        target=sales,
        orders=st.lists(
            st.tuples(
                st.sampled_from([VISA, VISA, REFUND_FAIL]),
                st.integers(1, 2),
                st.sampled_from(["20.00", "9.99", "35.50"]),
                st.booleans(),
            ),
            min_size=2,
            max_size=3,
        ),
    )
    def completed_sales(self, orders: list[tuple[str, int, str, bool]]) -> MultipleResults[Sale]:
        """A few checkouts, completed through the API, each on its own variant; some delivered
        already (so returns meet delivered orders)."""
        shop = Shop(self.http, self.world.operator, self.buyer, self.world.platform)

        async def sale(method: str, quantity: int, price: str, delivered: bool) -> Sale:
            made = await self._sell(shop, method, quantity, price)
            if delivered:
                await self._move(made, all_the_way=True, settle=True)
            return made

        async def sell() -> list[Sale]:
            return list(await asyncio.gather(*(sale(*order) for order in orders)))

        made = self.world.run(sell())
        self.all += made
        return multiple(*made)

    # -- the carrier and the buyer ----------------------------------------------------------------

    async def _caught_up(self, sale: Sale, settle: bool) -> None:
        """With `settle`, wait until the platform has caught up with the sale."""
        if settle:
            assert await self._quiet(sale, QUIET_WITHIN_S), f"{sale}: did not catch up"

    @rule(sale=sales, all_the_way=st.booleans(), settle=st.booleans())
    def move_parcel(self, sale: Sale, all_the_way: bool, settle: bool) -> None:
        """The carrier moves the parcel on, one status or `all_the_way` to the door (its tracker
        sends `tracker.updated` each time); a delivered parcel, or one whose label a
        cancellation voided, moves no more."""
        self.world.run(self._move(sale, all_the_way, settle))

    async def _move(self, sale: Sale, all_the_way: bool, settle: bool) -> None:
        while True:
            answer = await self.world.sandbox.post(
                f"/v2/test_helpers/shipments/{sale.carrier_id}/advance"
            )
            stuck = sale.cancelled or sale.step == len(SHIPMENT_AT) - 1
            self.world.stats[f"parcel {'stuck' if stuck else 'moved'}"] += 1
            if stuck:
                assert answer.status_code == 422, f"{sale}: moved after its end: {answer.text}"
                break
            assert answer.status_code == 200, answer.text
            sale.step += 1
            if not all_the_way or sale.step == len(SHIPMENT_AT) - 1:
                break
        await self._caught_up(sale, settle)

    def _cancel_answers(self, sale: Sale) -> set[str]:
        """What a cancel may answer now: `accepted` or a 409's code."""
        if sale.cancelled:
            return {"accepted"}  # asked again: the same cancellation
        # Money that went back moves the order off its way (a refund that fails never does);
        # the platform may not have heard of it yet.
        refunded = {"order_not_cancellable"} if sale.refunds and not sale.fails else set()
        if sale.step > 0:
            return {"already_shipped"} | refunded
        return {"accepted"} | refunded

    @rule(sale=sales, by_operator=st.booleans(), settle=st.booleans())
    def cancel_order(self, sale: Sale, by_operator: bool, settle: bool) -> None:
        """POST /v1/orders/{id}/cancel as the buyer or an operator."""

        async def cancel() -> None:
            headers = self.world.operator.headers if by_operator else sale.buyer.headers
            answer = await self.http.post(f"/v1/orders/{sale.order_id}/cancel", headers=headers)
            if answer.status_code == 202:
                outcome = "accepted"
                assert answer.json()["status"] in ("cancelling", "cancelled"), answer.text
            else:
                assert answer.status_code == 409, answer.text
                outcome = str(answer.json()["code"])
            self.world.stats[f"cancel {outcome}"] += 1
            allowed = self._cancel_answers(sale)
            assert outcome in allowed, f"{sale}: cancel answered {answer.text}, not {allowed}"
            sale.cancelled = outcome == "accepted"
            await self._caught_up(sale, settle)

        self.world.run(cancel())

    # -- the dashboard and the operators --------------------------------------------------------

    async def _no_pending(self, sale: Sale) -> Seen:
        """The sale once none of its refunds is pending at the provider (a failing card's
        refund is pending for a moment) and every refund asked of the platform was sent: what is
        left to refund is then what it will stay."""
        deadline = time.monotonic() + QUIET_WITHIN_S
        while True:
            seen = await self._seen(sale)
            sent = all(q["status"] != "requested" for q in seen.requests)
            if sent and all(r["status"] in SETTLED for r in seen.provider):
                return seen
            assert time.monotonic() < deadline, f"{sale}: a refund stays pending {seen.provider}"
            await asyncio.sleep(0.2)

    @rule(
        sale=sales,
        kind=st.sampled_from(["part", "rest", "over"]),
        part=st.integers(1, 10**6),
        settle=st.booleans(),
    )
    def dashboard_refund(self, sale: Sale, kind: str, part: int, settle: bool) -> None:
        """Someone refunds part, the rest, or more than is left in the provider's dashboard: the
        provider refuses too much and a refund of nothing left, and nothing changes then."""

        async def refund() -> None:
            before = await self._no_pending(sale)
            left = sale.captured - before.amount_refunded
            amount = {"part": 1 + part % max(left - 1, 1), "rest": None, "over": left + 1}[kind]
            params: dict[str, Any] = {"payment_intent": sale.intent}
            if amount is not None:
                params["amount"] = amount
            # A cancellation's own refund of the rest may land at any moment: either answer.
            racing = sale.cancelled
            made = await self._dashboard_refund(params)
            if isinstance(made, stripe.InvalidRequestError):
                self.world.stats[f"dashboard {kind} refused"] += 1
                assert racing or kind == "over" or left == 0, f"{sale}: refused {made}"
                if not racing:
                    after = await self._seen(sale)
                    assert after.provider == before.provider, f"{sale}: a refused refund moved"
                return
            self.world.stats[f"dashboard {kind} {made.status}"] += 1
            assert racing or (kind != "over" and left > 0), f"{sale}: accepted {made}"
            assert made.status == ("pending" if sale.fails else "succeeded"), made
            if not racing:
                assert made.amount == (amount or left), made
                sale.given += made.amount
            sale.refunds += 1
            await self._caught_up(sale, settle)

        self.world.run(refund())

    async def _dashboard_refund(
        self, params: dict[str, Any]
    ) -> stripe.Refund | stripe.InvalidRequestError:
        """A refund made in the dashboard, or the provider's refusal."""
        try:
            return await self.world.dashboard.v1.refunds.create_async(params)  # type: ignore[arg-type]
        except stripe.InvalidRequestError as refused:
            return refused

    @precondition(lambda self: OPERATOR_REFUNDS)
    @rule(
        sale=sales,
        kind=st.sampled_from(["part", "rest", "over"]),
        part=st.integers(1, 10**6),
        then=st.sampled_from([None, "same", "other"]),
        settle=st.booleans(),
    )
    def operator_refund(
        self, sale: Sale, kind: str, part: int, then: str | None, settle: bool
    ) -> None:
        """POST /v1/ops/orders/{id}/refunds: part, the rest or more than is left (422
        `refund_exceeds_captured`, nothing changes); the same key and body again answer the same
        refund, another body 422 `idempotency_key_mismatch`."""

        async def refund() -> None:
            before = await self._no_pending(sale)
            # The platform knows all there is to know: its answer is exact (else it may accept
            # what a dashboard refund on its way has already taken, and the provider refuses).
            exact = not lagging(sale, before) and not sale.cancelled
            left = sale.captured - before.amount_refunded
            amount = {"part": 1 + part % max(left - 1, 1), "rest": max(left, 1), "over": left + 1}
            body = {"amount": f"{Decimal(amount[kind]).scaleb(-2):.2f}", "reason": "a machine"}
            key = f"machine-{uuid.uuid4()}"
            answer = await self._operator_refund(sale, body, key)
            fits = kind != "over" and left > 0
            self.world.stats[f"operator refund {kind} {answer.status_code}"] += 1
            if answer.status_code == 422:
                assert answer.json()["code"] == "refund_exceeds_captured", answer.text
                assert not (exact and fits), f"{sale}: refused {body}, {left=}: {answer.text}"
                assert (await self._seen(sale)).provider == before.provider, f"{sale}: moved"
                return
            assert answer.status_code == 202, answer.text
            assert not exact or fits, f"{sale}: accepted {body}, {left=}: {answer.text}"
            refund_id = answer.json()["refund_id"]
            sale.refunds += 1
            if exact:
                sale.exact.add(refund_id)
            if then is not None:
                more = f"{Decimal(amount[kind] + 1).scaleb(-2):.2f}"
                other = {**body, "amount": more} if then == "other" else body
                again = await self._operator_refund(sale, other, key)
                if then == "same":
                    assert again.status_code == 202, again.text
                    assert again.json()["refund_id"] == refund_id, again.text
                else:
                    assert again.status_code == 422, again.text
                    assert again.json()["code"] == "idempotency_key_mismatch", again.text
            await self._caught_up(sale, settle)

        self.world.run(refund())

    async def _operator_refund(self, sale: Sale, body: Body, key: str) -> httpx.Response:
        headers = {**self.world.operator.headers, "Idempotency-Key": key}
        return await self.http.post(
            f"/v1/ops/orders/{sale.order_id}/refunds", json=body, headers=headers
        )

    @rule(
        retry=st.booleans(),
        pick=st.integers(0, 7),
        then=st.sampled_from([None, "same", "other"]),
    )
    def operator_attends_failed_refund(self, retry: bool, pick: int, then: str | None) -> None:
        """An operator takes one of the example's failed refunds from `/v1/ops/refunds/failed`
        and retries it (the same card fails again) or records it settled by hand. Asked the
        same again: the same answer; asked the other: 409 `refund_not_failed`. A retry of more
        than is left of the capture (refunded meanwhile) is 422 `refund_exceeds_captured`."""

        async def attend() -> None:
            ours = {s.checkout_id for s in self.all}
            mine = [r for r in (await self._waiting()).values() if r["checkout_id"] in ours]
            if not mine:
                self.world.stats["operator found none waiting"] += 1
                return
            chosen = mine[pick % len(mine)]
            assert (chosen["status"], chosen["resolution"]) == ("failed", None), chosen
            first = await self._attend(chosen["id"], retry)
            if retry and first.status_code == 409:
                # A return's refund: only its return asks the provider again.
                assert first.json()["code"] == "refund_owned_by_return", first.text
                self.world.stats["operator sent to the return"] += 1
                return
            if retry and first.status_code == 422:
                await self._refused_retry(chosen["id"], first, then)
                return
            assert first.status_code == 200, first.text
            self.world.stats[f"operator {'retry' if retry else 'resolve'}"] += 1
            settled = first.json()["refund"] if retry else first.json()
            assert settled["resolution"] == ("retried" if retry else "resolved"), first.text
            if then == "same":
                again = await self._attend(chosen["id"], retry)
                assert again.status_code == 200, again.text
                if retry:
                    new = again.json()["new_provider_refund_id"]
                    assert new == first.json()["new_provider_refund_id"], again.text
                else:
                    assert again.json()["resolution"] == "resolved", again.text
            elif then == "other":
                other = await self._attend(chosen["id"], not retry)
                assert (other.status_code, other.json()["code"]) == (409, "refund_not_failed")
            assert chosen["id"] not in await self._waiting(), f"still waiting: {chosen}"

        self.world.run(attend())

    async def _refused_retry(self, refund_id: str, first: httpx.Response, then: str | None) -> None:
        """A retry refused because less is left of the capture than the failed refund (the money
        went back since, e.g. in the dashboard): nothing moved, the same answer again, the
        refund still waiting; the operator then resolves it."""
        assert first.json()["code"] == "refund_exceeds_captured", first.text
        self.world.stats["operator retry refused: nothing left"] += 1
        if then == "same":
            again = await self._attend(refund_id, retry=True)
            assert (again.status_code, again.json()["code"]) == (422, "refund_exceeds_captured")
        assert refund_id in await self._waiting(), f"no longer waiting: {refund_id}"
        resolved = await self._attend(refund_id, retry=False)
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["resolution"] == "resolved", resolved.text

    async def _attend(self, refund_id: str, retry: bool) -> httpx.Response:
        action = "retry" if retry else "resolve"
        return await self.http.post(
            f"/v1/ops/refunds/{refund_id}/{action}",
            json={"note": "settled by the state machine"},
            headers=self.world.operator.headers,
        )

    # -- returns --------------------------------------------------------------------------------

    def _return_answers(self, sale: Sale, quantity: int, seen: Seen) -> set[str]:
        """What asking to return `quantity` units may answer now: `created` or a 422's code."""
        if quantity > sale.returnable:
            return {"return_quantity_exceeded", "order_not_returnable"}
        if sale.cancelled or sale.step < len(SHIPMENT_AT) - 1:
            return {"order_not_returnable"}
        if not lagging(sale, seen) and seen.order["status"] == "delivered":
            return {"created"}
        # Its delivery may not have reached the platform yet, or money went back meanwhile.
        return {"created", "order_not_returnable"}

    def _all_returns(self) -> list[tuple[Sale, Return]]:
        return [(sale, asked) for sale in self.all for asked in sale.returns]

    @precondition(lambda self: RETURNS)
    @rule(
        sale=sales,
        delivered=st.booleans(),
        quantity=st.integers(1, 2),
        replay=st.booleans(),
        settle=st.booleans(),
    )
    def ask_return(
        self, sale: Sale, delivered: bool, quantity: int, replay: bool, settle: bool
    ) -> None:
        """POST /v1/orders/{id}/returns as the buyer (of a delivered order of the example, if
        `delivered` and there is one): 201 for units no other return asks for; 422
        `return_quantity_exceeded` beyond them, `order_not_returnable` before delivery. The same
        key and body again answer the same return."""
        at_door = [s for s in self.all if s.step == len(SHIPMENT_AT) - 1 and not s.cancelled]
        if delivered and at_door:
            sale = at_door[quantity % len(at_door)]

        async def ask() -> None:
            seen = await self._seen(sale)
            allowed = self._return_answers(sale, quantity, seen)
            body = {
                "lines": [{"order_item_id": sale.item, "quantity": quantity}],
                "reason": "does not fit",
            }
            headers = {**sale.buyer.headers, "Idempotency-Key": f"machine-{uuid.uuid4()}"}
            url = f"/v1/orders/{sale.order_id}/returns"
            answer = await self.http.post(url, json=body, headers=headers)
            if answer.status_code == 201:
                outcome = "created"
            else:
                assert answer.status_code == 422, answer.text
                outcome = str(answer.json()["code"])
            where = "cancelled" if sale.cancelled else SHIPMENT_AT[sale.step]
            self.world.stats[f"return asked {outcome} ({where})"] += 1
            assert outcome in allowed, f"{sale}: asked {quantity}: {answer.text}, not {allowed}"
            if outcome != "created":
                return
            created = answer.json()
            assert created["status"] in ("requested", "approved"), created
            sale.returns.append(Return(created["id"], quantity, created["status"]))
            if replay:
                again = await self.http.post(url, json=body, headers=headers)
                assert (again.status_code, again.json()["id"]) == (201, created["id"]), again.text
            await self._caught_up(sale, settle)

        self.world.run(ask())

    @precondition(lambda self: RETURNS)
    @rule(
        pick=st.integers(0, 7),
        decision=st.sampled_from(["approve", "reject", None]),
        received=st.none() | st.integers(0, 2),
        restock=st.booleans(),
        settle=st.booleans(),
    )
    def operator_handles_return(
        self, pick: int, decision: str | None, received: int | None, restock: bool, settle: bool
    ) -> None:
        """An operator takes one of the example's returns: approves it (a return label is bought)
        or rejects it (its units may be asked for again), 409 `return_not_awaiting` unless
        requested (the same decision again answers the same); then perhaps counts what came back
        and whether it goes back to stock (restocked once, the refund made), 409
        `return_not_awaiting` unless approved."""
        if not (returns := self._all_returns()):
            return
        sale, asked = returns[pick % len(returns)]

        async def handle() -> None:
            if decision is not None:
                await self._decide(asked, decision)
            if received is not None:
                if asked.status == "approved":
                    await self._caught_up(sale, settle=True)  # its label is bought
                await self._receive(sale, asked, min(received, asked.quantity), restock)
            await self._caught_up(sale, settle)

        self.world.run(handle())

    async def _decide(self, asked: Return, action: str) -> None:
        answer = await self.http.post(
            f"/v1/ops/returns/{asked.id}/{action}", headers=self.world.operator.headers
        )
        self.world.stats[f"return {action} {asked.status} {answer.status_code}"] += 1
        target = "approved" if action == "approve" else "rejected"
        if asked.status == "requested":
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == target, answer.text
            asked.status = target
        elif asked.status == target:
            assert answer.status_code == 200, answer.text  # asked again: the same answer
        else:
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "return_not_awaiting", answer.text

    async def _receive(self, sale: Sale, asked: Return, count: int, restock: bool) -> None:
        receipt = {"lines": [{"order_item_id": sale.item, "quantity": count, "restock": restock}]}
        answer = await self.http.post(
            f"/v1/ops/returns/{asked.id}/receive", json=receipt, headers=self.world.operator.headers
        )
        self.world.stats[f"return receive {asked.status} {answer.status_code}"] += 1
        if asked.status != "approved":
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "return_not_awaiting", answer.text
            return
        assert answer.status_code == 200, answer.text
        asked.status = "received"
        asked.restocked = count if restock else 0
        sale.refunds += 0 if sale.fails else 1

    @rule(sale=sales, pick=st.integers(0, 15))
    def replay_provider_event(self, sale: Sale, pick: int) -> None:
        """The provider delivers one of the intent's events again: a duplicate once delivered,
        and it changes nothing of a sale the platform has caught up with."""

        async def redeliver() -> None:
            listed = await self.world.sandbox.get(
                "/v1/events", params={"payment_intent": sale.intent}
            )
            assert listed.status_code == 200, listed.text
            events: list[Body] = listed.json()["data"]
            if not events:
                return
            chosen = events[pick % len(events)]
            before = await self._seen(sale)
            quiet = not lagging(sale, before)
            document = {k: v for k, v in chosen.items() if k not in ("payment_intent", "delivery")}
            raw = json.dumps(document).encode()
            secret = self.world.platform.settings.stripe.webhook_secret.get_secret_value()
            answer = await self.http.post(
                WEBHOOK,
                content=raw,
                headers={
                    "Stripe-Signature": stripe_signature([secret], raw),
                    "content-type": "application/json",
                },
            )
            assert answer.status_code == 200, answer.text
            duplicate = answer.json()["duplicate"]
            state = chosen["delivery"]["state"]
            self.world.stats[f"event {chosen['type']} {state} -> {duplicate=}"] += 1
            if state == "delivered" and chosen["type"] in PAYMENT_EVENT_TYPES:
                assert duplicate is True, f"{sale}: {chosen['id']} delivered, not a duplicate"
            if quiet and duplicate:
                after = await self._seen(sale)
                assert after == before, f"{sale}: a duplicate moved it: {before} -> {after}"

        self.world.run(redeliver())

    @rule(sale=sales)
    def wait_until_caught_up(self, sale: Sale) -> None:
        """Let the platform catch up with one sale (so later steps meet quiet sales too)."""
        self.world.run(self._caught_up(sale, settle=True))

    # -- checks ---------------------------------------------------------------------------------

    def _always(self, sale: Sale, seen: Seen) -> None:
        """What holds of a sale even while events about it are on their way."""
        assert 0 <= seen.amount_refunded <= sale.captured, f"{sale}: provider {seen}"
        payment = (
            seen.minor(seen.payment["captured_amount"]),
            seen.minor(seen.payment["refunded_amount"]),
        )
        assert payment[0] == sale.captured, f"{sale}: payment captured {payment}"
        assert 0 <= payment[1] <= payment[0], f"{sale}: payment refunded {payment}"
        order = seen.minor(seen.order["refunded_amount"])
        assert 0 <= order <= seen.minor(seen.order["total_amount"]), f"{sale}: order {order}"
        # Every refund has its status; a unit goes back to stock at most once.
        assert all(r["status"] in (*SETTLED, "pending") for r in seen.rows), seen.rows
        assert STOCK - sale.quantity <= seen.stock[0] <= STOCK, f"{sale}: stock {seen.stock}"
        assert seen.stock[1] == 0, f"{sale}: reserved {seen.stock}"

    def _as_modelled(self, sale: Sale, seen: Seen, waiting: dict[str, Body]) -> None:
        """What the model expects of a sale the platform has caught up with."""
        requested = {q["id"]: q for q in seen.requests}
        for refund_id in sale.exact:
            asked = requested[refund_id]
            outcome = "failed" if sale.fails else "succeeded"
            assert (asked["status"], asked["refund_status"]) == ("sent", outcome), asked
        operators = sum(
            seen.minor(q["amount"]) for q in seen.requests if q["refund_status"] == "succeeded"
        )
        if sale.fails:
            expected = 0  # every refund to this card fails, and gives the money back
        elif sale.cancelled:
            expected = sale.captured  # the cancellation refunded the rest
        else:
            expected = sale.given + operators
        assert seen.amount_refunded == expected, f"{sale}: provider refunded {seen}"
        if sale.fails:
            assert all(r["status"] == "failed" for r in seen.rows), f"{sale}: {seen.rows}"
        if sale.cancelled and sale.fails:
            assert seen.rows, f"{sale}: cancelled with no refund {seen}"
        owed = {r["id"] for r in seen.rows if r["status"] == "failed" and r["resolution"] is None}
        listed = {i for i, r in waiting.items() if r["checkout_id"] == sale.checkout_id}
        assert listed == owed, f"{sale}: operators see {listed}, waiting {seen.rows}"
        expected_stock = (STOCK - sale.quantity + sale.restocked, 0)
        assert seen.stock == expected_stock, f"{sale}: stock {seen.stock}, {sale.returns}"
        self._returns_as_modelled(sale, seen)

    def _returns_as_modelled(self, sale: Sale, seen: Seen) -> None:
        """Each return where the model has it: a received one refunded (or, when the money could
        not go back, waiting for an operator), its units restocked as received."""
        platform = {r["id"]: r for r in seen.returns}
        assert set(platform) == {r.id for r in sale.returns}, f"{sale}: returns {seen.returns}"
        for asked in sale.returns:
            found = platform[asked.id]
            if asked.status != "received":
                assert found["status"] == asked.status, f"{sale}: {asked} is {found}"
                continue
            clean = not sale.fails and not sale.refunds
            allowed = ("refunded",) if clean else ("refunded", "needs_attention")
            assert found["status"] in allowed, f"{sale}: {asked} is {found}"
            restocked = sum(line["restocked_quantity"] for line in found["lines"])
            assert restocked == asked.restocked, f"{sale}: {asked} restocked {found}"

    async def _check(self, sales: list[Sale], *, again: bool = False) -> list[Sale]:
        """Check every sale; against the invariants those the platform has caught up with and
        that changed since they were last checked so (all of them `again`). Which were quiet."""
        waiting = await self._waiting()
        quiet, changed = [], []
        for sale, seen in zip(
            sales, await asyncio.gather(*(self._seen(s) for s in sales)), strict=True
        ):
            self._always(sale, seen)
            if not lagging(sale, seen):
                self._as_modelled(sale, seen, waiting)
                quiet.append(sale)
                if again or self.checked.get(sale.checkout_id) != seen:
                    changed.append(sale)
                    self.checked[sale.checkout_id] = seen
        self.world.stats["caught up at a check"] += len(quiet)
        report = await check_invariants(
            self.world.platform.databases,
            self.world.platform.psp_url,
            [uuid.UUID(s.checkout_id) for s in changed],
        )
        assert report.violations == [], report.violations
        return quiet

    @invariant()
    def money_after_the_sale(self) -> None:
        """Money and stock after every step (fully for the sales nothing is in flight for)."""
        self.world.run(self._check(self.all))

    def teardown(self) -> None:
        """Every sale catches up and is checked; then operators settle what is still owed, so
        no failed refund of the example is left waiting."""

        async def finish() -> None:
            for sale in self.all:
                seen = await self._quiet(sale, QUIET_WITHIN_S)
                assert seen is not None, (
                    f"{sale}: still in flight: {lagging(sale, await self._seen(sale))}"
                )
            assert len(await self._check(self.all, again=True)) == len(self.all)
            mine = {s.checkout_id for s in self.all}
            for refund in (await self._waiting()).values():
                if refund["checkout_id"] in mine:
                    assert (await self._attend(refund["id"], retry=False)).status_code == 200
            self.world.stats["sales"] += len(self.all)
            self.world.stats["examples"] += 1

        if self.all:
            self.world.run(finish())


async def test_money_and_stock_after_the_sale_keep_the_invariants(platform: Platform) -> None:
    chosen_seed = int(os.environ.get("STATEFUL_SEED") or random.randrange(2**32))
    print(f"stateful seed: {chosen_seed} (STATEFUL_SEED={chosen_seed} repeats its choices)")
    async with (
        httpx.AsyncClient(base_url=platform.api_url, timeout=30, limits=IDLE) as http,
        httpx.AsyncClient(base_url=platform.psp_url, timeout=30, limits=IDLE) as sandbox,
    ):
        world = World(
            asyncio.get_running_loop(),
            platform,
            http,
            sandbox,
            caller(platform, "operator"),
            # As the dashboard of test_aftersale, retrying a dropped connection (the SDK sends
            # its writes with an idempotency key, so a retried refund is made once).
            stripe.StripeClient(
                api_key=platform.settings.stripe.api_key.get_secret_value(),
                base_addresses={"api": platform.psp_url},
                max_network_retries=2,
            ),
        )

        class Machine(AfterSaleMachine):
            def __init__(self) -> None:
                super().__init__(world)

        started = time.monotonic()
        try:
            await asyncio.to_thread(
                run_state_machine_as_test,
                seed(chosen_seed)(Machine),
                settings=settings(
                    max_examples=int(os.environ.get("STATEFUL_EXAMPLES") or EXAMPLES),
                    stateful_step_count=12,
                    deadline=None,
                    database=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        except BaseException as failure:
            failure.add_note(f"stateful seed: {chosen_seed}")
            raise
        finally:
            print(f"{time.monotonic() - started:.0f}s {sorted(world.stats.items())}")
            print(f"seconds by step: { {k: round(v) for k, v in world.seconds.items()} }")
