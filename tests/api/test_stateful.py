"""Stateful property: users, carts, coupons, checkouts, cancels and provider events, in any order.

A hypothesis `RuleBasedStateMachine` drives the real stack through the HTTP API only: shoppers
register, fill carts from a few variants with very little stock (so concurrent checkouts race for
it), operators create coupons with tight limits, checkouts start with every payment method of
the sandbox (and an unknown one), sometimes twice at once or replayed under the same
Idempotency-Key, buyers approve 3-D Secure challenges and cancel, operators force cancels, and the
provider's events are delivered again.

After every step the invariants (docs/reference/invariants.md: stock, coupon limits, all of a
checkout that has just ended) and the model's expectations hold: a cancel the API accepted ends
`cancelled` with nothing charged, a replay answers the recorded outcome and changes nothing, the
run ends Completed with its `CheckoutStatus` search attribute equal to the API's status. At the
end of each example every checkout of the run must have ended, and everything is checked again.

The API under test is the platform's own application built with a three-second payment window
(`CHECKOUT_PAYMENT_TIMEOUT`), so checkouts waiting on `pm_sandbox_no_webhook` or an unapproved
3-D Secure challenge expire within an example; the sandbox keeps delivering its webhooks to the
platform fixture's API, which shares the databases and Temporal.

The machine's seed is printed; `STATEFUL_SEED=<n>` runs the same choices again (the platform's
timing still varies); `STATEFUL_EXAMPLES=<n>` runs more examples than CI's 12 (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
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
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus

from api.app import create_app
from api.auth import issue_token
from api.services.webhooks import PAYMENT_EVENT_TYPES
from sandbox.psp.signing import stripe_signature
from tests.api.conftest import Caller, caller
from tests.api.test_routes import new_variant
from tests.platform import Platform
from tools.invariants import check_invariants
from workflows.checkout.client import CheckoutClient
from workflows.checkout.contract import CHECKOUT_STATUS, FINAL

pytestmark = pytest.mark.timeout(900)

T = TypeVar("T")
Body = dict[str, Any]

PAYMENT_TIMEOUT = timedelta(seconds=3)
WEBHOOK = "/v1/webhooks/payments/stripe"
# Longest any one step (or the final wait) may take before the run is declared stuck.
STEP_LIMIT_S = 120.0
# How long a checkout may take to end once nothing more is done to it: the payment window, the
# compensation, and a slow CI machine.
END_WITHIN_S = PAYMENT_TIMEOUT.total_seconds() + 60
# After the API reports the end, the workflow run closes (its last record, its last upsert).
CLOSE_WITHIN_S = 15.0

METHODS = [
    "pm_card_visa",
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_threeDSecure2Required",
    "pm_sandbox_3ds_fail",
    "pm_sandbox_async",
    "pm_sandbox_no_webhook",
    "pm_sandbox_capture_fails",
    "pm_x",
]
THREE_DS = "pm_card_threeDSecure2Required"
# Steps of a checkout that is no longer running forward (cancels answer `checkout_ended`).
GIVING_BACK = ("compensating", "needs_attention")
# Methods that can never pay: their checkout completes only when there is nothing to pay.
NEVER_PAY = {
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_sandbox_3ds_fail",
    "pm_sandbox_no_webhook",
    "pm_sandbox_capture_fails",
    "pm_x",
}
# (price, stock) of the variants each example sells: few units, so checkouts race for them.
VARIANTS = [("9.99", 2), ("4.50", 3), ("20.00", 4)]
# A cart's lines: (variant index, quantity).
LINES = st.lists(
    st.tuples(st.integers(0, len(VARIANTS) - 1), st.integers(1, 2)), min_size=1, max_size=2
)
# Paying methods twice as often: more captures, refunds and 3-D Secure approvals to race with.
METHOD = st.sampled_from([*METHODS, "pm_card_visa", THREE_DS])
# Per example, so most steps act on checkouts.
MAX_SHOPPERS, MAX_CARTS, MAX_COUPONS = 4, 5, 3
COUPON_KINDS = [("percentage", "10"), ("percentage", "50"), ("percentage", "100")]
COUPON_KINDS += [("fixed", "5.00"), ("fixed", "1000.00")]
COUPON_KIND = st.sampled_from(COUPON_KINDS)
REDEMPTIONS = st.sampled_from([None, 1, 2])
PER_USER = st.sampled_from([None, 1])
ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Navy Yard",
    "city": "Arlington",
    "postal_code": "22202",
    "country": "US",
}


@dataclass
class World:
    """What every example shares: the session's event loop and platform, the API's clients."""

    loop: asyncio.AbstractEventLoop
    platform: Platform
    http: httpx.AsyncClient  # the API under test
    browser: httpx.AsyncClient  # a buyer's browser (3-D Secure pages) and the sandbox's API
    operator: Caller
    stats: Counter[str] = field(default_factory=Counter)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the session's loop (the state machine runs in a thread)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(STEP_LIMIT_S)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"a step took more than {STEP_LIMIT_S:.0f}s") from None

    @property
    def secret(self) -> str:
        """The Stripe webhook signing secret the platform verifies with."""
        return self.platform.settings.stripe.webhook_secret.get_secret_value()


@dataclass(eq=False)
class User:
    """A registered shopper and their token."""

    me: Caller

    def __repr__(self) -> str:
        return f"User({self.me.user_id})"


@dataclass(eq=False)
class Cart:
    """A cart and its owner."""

    id: str
    owner: User

    def __repr__(self) -> str:
        return f"Cart({self.id})"


@dataclass(eq=False)
class Coupon:
    """A coupon the operator created."""

    code: str

    def __repr__(self) -> str:
        return f"Coupon({self.code})"


@dataclass(eq=False)
class Checkout:
    """A started checkout and what the model knows of it."""

    id: str
    key: str
    request: Body
    cart: Cart
    method: str
    approved: bool = False  # its 3-D Secure page was opened
    cancel_accepted: bool = False  # the buyer's cancel answered 202
    forced: bool = False  # an operator's cancel answered 202
    giving_back: bool = False  # a cancel was refused while it compensated: it cannot complete
    ended: Body | None = None  # its final status body, once seen and checked
    run_id: str | None = None  # its workflow run, once ended

    def __repr__(self) -> str:
        return f"Checkout({self.id}, {self.method})"

    @property
    def headers(self) -> dict[str, str]:
        """The buyer's headers with this checkout's Idempotency-Key."""
        return {**self.cart.owner.me.headers, "Idempotency-Key": self.key}


def problem_code(answer: httpx.Response) -> str | None:
    """The problem+json `code` of an error answer."""
    try:
        code = answer.json().get("code")
    except ValueError:
        return None
    return str(code) if code is not None else None


class CheckoutMachine(RuleBasedStateMachine):
    """Shoppers and operators acting on the platform in random order."""

    users = Bundle[User]("users")
    carts = Bundle[Cart]("carts")
    coupons = Bundle[Coupon]("coupons")
    checkouts = Bundle[Checkout]("checkouts")

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.variants: list[str] = []
        self.started: list[Checkout] = []
        self.carts_of: dict[str, list[Checkout]] = {}
        self.shoppers = 0
        self.coupons_made = 0

    # -- helpers (coroutines on the session loop) ---------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        return self.world.http

    async def _status(self, checkout: Checkout) -> Body:
        answer = await self.http.get(
            f"/v1/checkouts/{checkout.id}", headers=checkout.cart.owner.me.headers
        )
        assert answer.status_code == 200, f"GET {checkout}: {answer.status_code} {answer.text}"
        body: Body = answer.json()
        return body

    async def _ledger(self, checkout: Checkout) -> list[Body]:
        return await self.world.platform.ledger(uuid.UUID(checkout.id))

    async def _closed_run(self, checkout: Checkout) -> WorkflowExecutionDescription:
        """Temporal's description of the checkout's run, once the run has closed."""
        client = CheckoutClient(self.world.platform.client)
        deadline = time.monotonic() + CLOSE_WITHIN_S
        while True:
            description = await client.describe(uuid.UUID(checkout.id))
            assert description is not None, f"{checkout}: no workflow"
            if description.status != WorkflowExecutionStatus.RUNNING:
                return description
            assert time.monotonic() < deadline, (
                f"{checkout}: the API reports its end, the run is still open"
            )
            await asyncio.sleep(0.1)

    async def _settle(self, checkout: Checkout, body: Body) -> None:
        """Everything that must hold of a checkout once the API reports its end."""
        description = await self._closed_run(checkout)
        assert description.status == WorkflowExecutionStatus.COMPLETED, (
            f"{checkout}: the run ended {description.status!r}"
        )
        attribute = description.typed_search_attributes.get(CHECKOUT_STATUS)
        assert attribute == body["status"], (
            f"{checkout}: CheckoutStatus={attribute!r}, the API says {body['status']!r}"
        )
        again = await self._status(checkout)
        assert again == body, f"{checkout}: an ended checkout changed: {body} -> {again}"
        status = body["status"]
        failure = (body.get("failure") or {}).get("code", "")
        self.world.stats[f"ended {status} {failure}".strip()] += 1
        total = Decimal(body["order"]["total_amount"]) if body.get("order") else None
        ledger = await self._ledger(checkout)
        if checkout.cancel_accepted:
            assert status == "cancelled", f"{checkout}: buyer's cancel accepted, ended {body}"
            captured = [row for row in ledger if int(row["captured"])]
            assert not captured, f"{checkout}: buyer's cancel accepted, charged: {captured}"
        if checkout.forced:
            assert status == "cancelled", f"{checkout}: operator's cancel accepted, ended {body}"
        if checkout.giving_back:
            assert status != "completed", f"{checkout}: refused as ended, then completed {body}"
        unpaid = checkout.method in NEVER_PAY or (
            checkout.method == THREE_DS and not checkout.approved
        )
        if status == "completed" and unpaid:
            assert total == 0, f"{checkout}: completed with nothing paying {total}: {body}"
        violations = (
            await check_invariants(
                self.world.platform.databases,
                self.world.platform.psp_url,
                [uuid.UUID(checkout.id)],
            )
        ).violations
        assert violations == [], f"{checkout}: {violations}"
        checkout.ended = body
        checkout.run_id = description.run_id
        # A replay of its request, now that it has ended, answers the recorded outcome.
        replay = await self.http.post(
            "/v1/checkouts", json=checkout.request, headers=checkout.headers
        )
        assert replay.status_code == 202, replay.text
        assert replay.json() == {"checkout_id": checkout.id, "status": status}, (
            f"{checkout}: replay answered {replay.text}, it ended {body}"
        )
        await self._unchanged(checkout, body)

    async def _observe(self) -> None:
        """Settle every checkout that has ended since the last step; stock and coupons."""
        for checkout in self.started:
            if checkout.ended is None:
                body = await self._status(checkout)
                assert body["step"] != "needs_attention", f"{checkout}: parked: {body}"
                if body["status"] in FINAL:
                    await self._settle(checkout, body)
        report = await check_invariants(
            self.world.platform.databases, self.world.platform.psp_url, []
        )
        assert report.violations == [], report.violations

    async def _until_ended(self, checkouts: list[Checkout], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while True:
            await self._observe()
            waiting = [c for c in checkouts if c.ended is None]
            if not waiting:
                return
            if time.monotonic() > deadline:
                bodies = [(c, await self._status(c)) for c in waiting]
                raise AssertionError(f"not ended after {within_s:.0f}s: {bodies}")
            await asyncio.sleep(0.2)

    # -- rules and what they share -----------------------------------------------------------------

    async def _shelves(self) -> list[str]:
        """The example's variants (little stock), made on first use."""
        if not self.variants:
            for price, stock in VARIANTS:
                variant = await new_variant(
                    self.http, self.world.operator, stock=stock, price=price
                )
                self.variants.append(variant)
        return self.variants

    async def _register(self) -> User:
        email = f"shopper-{uuid.uuid4().hex[:12]}@example.com"
        answer = await self.http.post("/v1/users", json={"email": email})
        assert answer.status_code == 201, answer.text
        user_id = uuid.UUID(answer.json()["id"])
        token = issue_token(self.world.platform.settings, user_id, ["customer"])
        self.shoppers += 1
        return User(Caller(user_id, {"Authorization": f"Bearer {token}"}))

    async def _fill(self, owner: User, lines: list[tuple[int, int]]) -> Cart:
        variants = await self._shelves()
        created = await self.http.post(
            "/v1/carts", json={"currency": "USD"}, headers=owner.me.headers
        )
        assert created.status_code == 201, created.text
        cart = Cart(created.json()["id"], owner)
        for index, quantity in lines:
            added = await self.http.post(
                f"/v1/carts/{cart.id}/items",
                json={"variant_id": variants[index], "quantity": quantity},
                headers=owner.me.headers,
            )
            assert added.status_code == 200, added.text
        self.carts_of[cart.id] = []
        return cart

    async def _start(
        self, cart: Cart, method: str, coupon: Coupon | None, twins: bool = False
    ) -> Checkout:
        """POST /v1/checkouts (with `twins`, the same request twice at once: one checkout)."""
        request: Body = {
            "cart_id": cart.id,
            "shipping_address": ADDRESS,
            "payment": {"provider": "stripe", "payment_method": method},
            **({"coupon_code": coupon.code} if coupon else {}),
        }
        key = uuid.uuid4().hex
        headers = {**cart.owner.me.headers, "Idempotency-Key": key}
        sends = [self.http.post("/v1/checkouts", json=request, headers=headers)]
        if twins:
            sends.append(self.http.post("/v1/checkouts", json=request, headers=headers))
        answers = await asyncio.gather(*sends)
        for answer in answers:
            assert answer.status_code == 202, answer.text
        ids = {answer.json()["checkout_id"] for answer in answers}
        assert len(ids) == 1, f"one key, several checkouts: {ids}"
        checkout = Checkout(ids.pop(), key, request, cart, method)
        self.world.stats["started with a coupon" if coupon else "started"] += 1
        for answer in answers:
            assert answer.headers["location"] == f"/v1/checkouts/{checkout.id}"
        self.started.append(checkout)
        self.carts_of[cart.id].append(checkout)
        return checkout

    @staticmethod
    def _noted(checkout: Checkout) -> Checkout:
        """Name the checkout in a failing example's report (in the machine's thread)."""
        note(f"started {checkout}")
        return checkout

    @initialize(target=users)
    def first_shopper(self) -> User:
        """The example's variants and a first shopper."""
        self.world.run(self._shelves())
        return self.world.run(self._register())

    @initialize(
        target=checkouts,
        lines=LINES,
        methods=st.lists(METHOD, min_size=2, max_size=2),
        single_use=st.none() | COUPON_KIND,
    )
    def opening_race(
        self, lines: list[tuple[int, int]], methods: list[str], single_use: tuple[str, str] | None
    ) -> MultipleResults[Checkout]:
        """Two shoppers check out the same lines at once, perhaps with a coupon only one of them
        may redeem (whatever rules the example enables, it has checkouts to act on)."""

        async def race() -> list[Checkout]:
            coupon = await self._coupon(single_use, 1, None) if single_use else None
            carts = [await self._fill(await self._register(), lines) for _ in methods]
            return list(
                await asyncio.gather(
                    *(
                        self._start(cart, method, coupon)
                        for cart, method in zip(carts, methods, strict=True)
                    )
                )
            )

        return multiple(*map(self._noted, self.world.run(race())))

    @precondition(lambda self: self.shoppers < MAX_SHOPPERS)
    @rule(target=users)
    def new_user(self) -> User:
        """POST /v1/users, then a customer token for the new id."""
        return self.world.run(self._register())

    @precondition(lambda self: len(self.carts_of) < MAX_CARTS)
    @rule(target=carts, owner=users, lines=LINES)
    def new_cart(self, owner: User, lines: list[tuple[int, int]]) -> Cart:
        """A cart of `owner` holding `lines` (variant index, quantity)."""
        return self.world.run(self._fill(owner, lines))

    @rule(cart=carts, index=st.integers(0, len(VARIANTS) - 1))
    def add_item(self, cart: Cart, index: int) -> None:
        """One more unit in a cart: 200 while no checkout holds it, 409 once one converted it."""

        async def add() -> None:
            mine = self.carts_of[cart.id]
            # Known before the call: every checkout of the cart has ended (and given it back,
            # unless one completed and converted it).
            all_ended = all(c.ended is not None for c in mine)
            converted = any(c.ended is not None and c.ended["status"] == "completed" for c in mine)
            answer = await self.http.post(
                f"/v1/carts/{cart.id}/items",
                json={"variant_id": self.variants[index], "quantity": 1},
                headers=cart.owner.me.headers,
            )
            assert answer.status_code in (200, 409), answer.text
            self.world.stats[f"add_item {answer.status_code}"] += 1
            if converted:
                assert answer.status_code == 409, f"{cart}: converted, still editable"
            elif all_ended:
                assert answer.status_code == 200, f"{cart}: every checkout ended: {answer.text}"

        self.world.run(add())

    async def _coupon(
        self, kind: tuple[str, str], max_redemptions: int | None, max_per_user: int | None
    ) -> Coupon:
        code = f"S{uuid.uuid4().hex[:12].upper()}"
        now = datetime.now(UTC)
        discount_type, value = kind
        body: Body = {
            "code": code,
            "discount_type": discount_type,
            "discount_value": value,
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_to": (now + timedelta(days=1)).isoformat(),
            "max_redemptions": max_redemptions,
            "max_per_user": max_per_user,
            **({"currency": "USD"} if discount_type == "fixed" else {}),
        }
        answer = await self.http.post("/v1/coupons", json=body, headers=self.world.operator.headers)
        assert answer.status_code == 201, answer.text
        self.coupons_made += 1
        return Coupon(code)

    @initialize(
        target=coupons, kind=COUPON_KIND, max_redemptions=REDEMPTIONS, max_per_user=PER_USER
    )
    def first_coupon(
        self, kind: tuple[str, str], max_redemptions: int | None, max_per_user: int | None
    ) -> Coupon:
        """A coupon from the start, so checkouts with coupons happen whatever rules run."""
        return self.world.run(self._coupon(kind, max_redemptions, max_per_user))

    @precondition(lambda self: self.coupons_made < MAX_COUPONS)
    @rule(target=coupons, kind=COUPON_KIND, max_redemptions=REDEMPTIONS, max_per_user=PER_USER)
    def new_coupon(
        self, kind: tuple[str, str], max_redemptions: int | None, max_per_user: int | None
    ) -> Coupon:
        """POST /v1/coupons as the operator."""
        return self.world.run(self._coupon(kind, max_redemptions, max_per_user))

    @rule(
        target=checkouts, cart=carts, method=METHOD, coupon=st.none() | coupons, twins=st.booleans()
    )
    def start_checkout(
        self, cart: Cart, method: str, coupon: Coupon | None, twins: bool
    ) -> Checkout:
        """Check out a cart (perhaps one already checked out, or held by a running checkout)."""
        return self._noted(self.world.run(self._start(cart, method, coupon, twins)))

    @rule(
        target=checkouts,
        owner=users,
        lines=LINES,
        method=METHOD,
        coupon=st.none() | coupons,
        then=st.sampled_from([None, "approve", "buyer", "operator"]),
        after_s=st.sampled_from([0.0, 0.2, 0.6]),
    )
    def checkout_new_cart(
        self,
        owner: User,
        lines: list[tuple[int, int]],
        method: str,
        coupon: Coupon | None,
        then: str | None,
        after_s: float,
    ) -> Checkout:
        """Fill a fresh cart and check it out; then perhaps approve its 3-D Secure challenge as
        soon as it shows one, or cancel it `after_s` later (buyer or operator), while it most
        likely still runs."""

        async def buy() -> Checkout:
            checkout = await self._start(await self._fill(owner, lines), method, coupon)
            if then == "approve":
                await self._approve(checkout, within_s=10)
            elif then is not None:
                await asyncio.sleep(after_s)
                cancel = self._buyer_cancel if then == "buyer" else self._operator_cancel
                await cancel(checkout)
            return checkout

        return self._noted(self.world.run(buy()))

    @rule(checkout=checkouts)
    def replay_same_request(self, checkout: Checkout) -> None:
        """Same key, same body: the same checkout; once ended, its recorded outcome, unchanged."""

        async def replay() -> None:
            known = checkout.ended
            answer = await self.http.post(
                "/v1/checkouts", json=checkout.request, headers=checkout.headers
            )
            assert answer.status_code == 202, answer.text
            assert answer.json()["checkout_id"] == checkout.id, answer.text
            if known is not None:
                self.world.stats["replayed ended"] += 1
                assert answer.json()["status"] == known["status"], (
                    f"{checkout}: replay answered {answer.text}, it ended {known}"
                )
                await self._unchanged(checkout, known)

        self.world.run(replay())

    @rule(checkout=checkouts, change=st.sampled_from(["method", "address", "coupon"]))
    def replay_other_body(self, checkout: Checkout, change: str) -> None:
        """Same key, another body: 422, and nothing changes."""
        other: Body = json.loads(json.dumps(checkout.request))
        if change == "method":
            other["payment"]["payment_method"] = (
                "pm_card_visa" if checkout.method != "pm_card_visa" else "pm_x"
            )
        elif change == "address":
            other["shipping_address"]["name"] = "Ada Lovelace"
        else:
            other["coupon_code"] = "NOSUCHCOUPON" if "coupon_code" not in other else None

        async def replay() -> None:
            known = checkout.ended
            answer = await self.http.post("/v1/checkouts", json=other, headers=checkout.headers)
            assert answer.status_code == 422, answer.text
            assert problem_code(answer) == "idempotency_key_mismatch", answer.text
            if known is not None:
                await self._unchanged(checkout, known)

        self.world.run(replay())

    async def _unchanged(self, checkout: Checkout, known: Body) -> None:
        """An ended checkout still answers `known`, from the same (closed) run."""
        assert await self._status(checkout) == known, f"{checkout}: changed after its end"
        description = await CheckoutClient(self.world.platform.client).describe(
            uuid.UUID(checkout.id)
        )
        assert description is not None
        assert (description.run_id, description.status) == (
            checkout.run_id,
            WorkflowExecutionStatus.COMPLETED,
        ), f"{checkout}: ran again ({description.run_id}, {description.status})"

    @rule(checkout=checkouts)
    def approve_3ds(self, checkout: Checkout) -> None:
        """Open the checkout's 3-D Secure page, if it shows one now."""
        self.world.run(self._approve(checkout, within_s=0))

    async def _approve(self, checkout: Checkout, within_s: float) -> None:
        """Open the 3-D Secure page once the checkout shows one (waiting up to `within_s`)."""
        deadline = time.monotonic() + within_s
        while True:
            body = await self._status(checkout)
            action = (body.get("payment") or {}).get("next_action")
            if action:
                break
            if body["status"] in FINAL or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.1)
        page = await self.world.browser.get(action["url"])
        assert page.status_code < 500, page.text
        checkout.approved = True
        self.world.stats["approved 3ds"] += 1

    @rule(checkout=checkouts)
    def buyer_cancel(self, checkout: Checkout) -> None:
        """202 only when it will be honoured; 409 already_captured / checkout_ended otherwise."""
        self.world.run(self._buyer_cancel(checkout))

    @rule(checkout=checkouts)
    def operator_cancel(self, checkout: Checkout) -> None:
        """POST /v1/ops/checkouts/{id}/cancel: 202 (it ends cancelled) or 409 checkout_ended."""
        self.world.run(self._operator_cancel(checkout))

    async def _buyer_cancel(self, checkout: Checkout) -> None:
        known = checkout.ended
        answer = await self.http.post(
            f"/v1/checkouts/{checkout.id}/cancel", headers=checkout.cart.owner.me.headers
        )
        code = problem_code(answer) if answer.status_code == 409 else None
        self.world.stats[f"buyer cancel {answer.status_code} {code or ''}".strip()] += 1
        if answer.status_code == 202:
            assert known is None, f"{checkout}: cancel accepted after its end {known}"
            checkout.cancel_accepted = True
            return
        assert answer.status_code == 409, answer.text
        assert code in ("already_captured", "checkout_ended"), answer.text
        if known is not None:
            assert code == "checkout_ended", answer.text
        if code == "checkout_ended":
            await self._told_ended(checkout)

    async def _operator_cancel(self, checkout: Checkout) -> None:
        known = checkout.ended
        answer = await self.http.post(
            f"/v1/ops/checkouts/{checkout.id}/cancel", headers=self.world.operator.headers
        )
        code = problem_code(answer) if answer.status_code == 409 else None
        self.world.stats[f"operator cancel {answer.status_code} {code or ''}".strip()] += 1
        if answer.status_code == 202:
            assert known is None, f"{checkout}: force-cancel accepted after its end {known}"
            checkout.forced = True
            return
        assert answer.status_code == 409, answer.text
        assert code == "checkout_ended", answer.text
        await self._told_ended(checkout)

    async def _told_ended(self, checkout: Checkout) -> None:
        """After a 409 `checkout_ended`: it has ended, or it is giving back what it held (the
        README's reading) and so can no longer complete."""
        body = await self._status(checkout)
        if body["status"] not in FINAL:
            assert body["step"] in GIVING_BACK, f"{checkout}: told ended, still {body}"
            checkout.giving_back = True

    @rule(checkout=checkouts, pick=st.integers(0, 7))
    def replay_provider_event(self, checkout: Checkout, pick: int) -> None:
        """Deliver one of the provider's events for the checkout again: a duplicate once
        delivered, and it changes nothing of an ended checkout."""

        async def redeliver() -> None:
            intents = [row["payment_intent"] for row in await self._ledger(checkout)]
            events: list[Body] = []
            for intent in intents:
                listed = await self.world.browser.get(
                    f"{self.world.platform.psp_url}/v1/events",
                    params={"payment_intent": intent},
                )
                assert listed.status_code == 200, listed.text
                events += listed.json()["data"]
            if not events:
                return
            chosen = events[pick % len(events)]
            known = checkout.ended
            ledger = await self._ledger(checkout) if known else None
            delivered = chosen["delivery"]["state"] == "delivered"
            document = {k: v for k, v in chosen.items() if k not in ("payment_intent", "delivery")}
            raw = json.dumps(document).encode()
            answer = await self.http.post(
                WEBHOOK,
                content=raw,
                headers={
                    "Stripe-Signature": stripe_signature([self.world.secret], raw),
                    "content-type": "application/json",
                },
            )
            assert answer.status_code == 200, answer.text
            duplicate = answer.json()["duplicate"]
            self.world.stats[f"event replay {chosen['delivery']['state']} -> {duplicate=}"] += 1
            if delivered and chosen["type"] in PAYMENT_EVENT_TYPES:
                assert duplicate is True, f"{checkout}: {chosen['id']} delivered, not a duplicate"
            if known is not None:
                await self._unchanged(checkout, known)
                assert await self._ledger(checkout) == ledger, f"{checkout}: the ledger moved"

        self.world.run(redeliver())

    @rule(checkout=checkouts)
    def wait_for_end(self, checkout: Checkout) -> None:
        """Let one checkout run to its end (so later steps meet ended checkouts too)."""
        self.world.run(self._until_ended([checkout], END_WITHIN_S))

    # -- checks -----------------------------------------------------------------------------------

    @invariant()
    def contract_holds(self) -> None:
        """Checkouts that ended since the last step are settled and checked; stock and coupons."""
        self.world.run(self._observe())

    def teardown(self) -> None:
        """Every checkout of the example ends; all of them are checked together."""

        async def finish() -> None:
            await self._until_ended(self.started, END_WITHIN_S)
            report = await check_invariants(
                self.world.platform.databases,
                self.world.platform.psp_url,
                [uuid.UUID(c.id) for c in self.started],
            )
            assert report.violations == [], report.violations
            self.world.stats["checkouts"] += len(self.started)
            self.world.stats["examples"] += 1

        self.world.run(finish())


async def test_random_shoppers_and_operators_keep_the_contract(platform: Platform) -> None:
    # The platform's API with a short payment window (the platform's own settings otherwise).
    short_window = platform.settings.updated(checkout={"payment_timeout": PAYMENT_TIMEOUT})
    app = create_app(short_window, temporal=platform.client)
    chosen_seed = int(os.environ.get("STATEFUL_SEED") or random.randrange(2**32))
    print(f"stateful seed: {chosen_seed} (STATEFUL_SEED={chosen_seed} repeats its choices)")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=30
            )
        )
        browser = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        world = World(
            asyncio.get_running_loop(), platform, http, browser, caller(platform, "operator")
        )

        class Machine(CheckoutMachine):
            def __init__(self) -> None:
                super().__init__(world)

        started = time.monotonic()
        try:
            await asyncio.to_thread(
                run_state_machine_as_test,
                seed(chosen_seed)(Machine),
                settings=settings(
                    max_examples=int(os.environ.get("STATEFUL_EXAMPLES") or 12),
                    stateful_step_count=25,
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
