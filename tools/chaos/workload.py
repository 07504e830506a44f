"""What the load buys and how: a mixed workload over every payment method of the sandbox.

Each checkout follows a `Scenario` (its payment method, whether the buyer completes 3-D Secure,
a coupon, and the outcomes the contract allows). Singles are drawn by weight; races are groups
that start at the same moment: a coupon with `max_redemptions` 5 wanted by up to 30 buyers, a
variant with 3 in stock wanted by up to 20. Some buyers cancel at a random moment; some checkouts
are cancelled by an operator once the payment is being captured (the refund path).

The after-sale scenarios: a declined card retried with another (`on_decline: retry`), declines
whose reason must not reach the buyer (lost, stolen, fraudulent), a refund that fails at the
provider and waits for an operator, a dispute, a refund made in the provider's dashboard, the
buyer cancelling the order while the carrier's tracking moves the parcel, an operator's partial
refund, and a return of part of a delivered, discounted order with a paid shipping rate.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tools.chaos.client import PatientClient

# (status, failure code) of an ended checkout; the code is None for a completed one.
Outcome = tuple[str, str | None]
COMPLETED: Outcome = ("completed", None)
DECLINED: Outcome = ("failed", "payment_declined")
EXPIRED: Outcome = ("expired", "payment_timeout")
CANCELLED: Outcome = ("cancelled", "cancelled")
COUPON_EXHAUSTED: Outcome = ("failed", "coupon_exhausted")
OUT_OF_STOCK: Outcome = ("failed", "out_of_stock")

CURRENCY = "USD"
# How long a checkout waits for a payment action in the chaos stack (CHECKOUT_PAYMENT_TIMEOUT).
PAYMENT_TIMEOUT_S = 20
# An operator id of the platform's development fixtures (README walkthrough).
OPERATOR_ID = "00000000-0000-4000-8000-000000000001"
SELLER_ID = "00000000-0000-4000-8000-000000000002"
ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Navy Yard",
    "city": "Arlington",
    "postal_code": "22202",
    "country": "US",
}
# Where the shipping-rate scenarios ship: a state where the sandbox's tax service collects
# (7.25 %), so their orders carry tax on the items and on the shipping.
TAXED_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "postal_code": "94105",
    "country": "US",
}
# The races: how many units or redemptions there are, and at most how many buyers want them.
SCARCE_STOCK, SCARCE_BUYERS = 3, 20
COUPON_LIMIT, COUPON_BUYERS = 5, 30
# Shares of the load that race (the rest are singles drawn from SCENARIOS by weight).
SCARCE_SHARE, COUPON_SHARE = 0.10, 0.15
# Shares of the cancellable singles that a buyer cancels, and that an operator cancels.
BUYER_CANCEL_SHARE, OPERATOR_CANCEL_SHARE = 0.10, 0.08
# The faults that keep the payment provider away (tools/chaos/faults.py names them so): a
# checkout that meets one may see its payment window end while the provider cannot answer.
PROVIDER_FAULTS = frozenset({"psp-down", "psp-slow", "kill:sandbox"})


@dataclass(frozen=True)
class Scenario:
    """How one checkout pays, and which outcomes the contract allows it."""

    name: str
    method: str
    expect: frozenset[Outcome]
    weight: float = 0.0
    approve: bool = False  # the buyer completes 3-D Secure (GET payment.next_action.url)
    coupon: str | None = None  # "free": a 100 % coupon (a zero total); "discount": 15 %
    cancellable: bool = False  # a buyer or operator cancel makes sense for it
    tok_alias: str | None = None  # sometimes pay with the sandbox's `{provider, token}` alias
    retry_with: str | None = None  # `on_decline: retry`, then this method once declined
    generic: bool = False  # a decline whose reason the buyer must not see (fraud, lost, stolen)
    # After the end: "dispute" (must show to operators), "dashboard_refund" (a refund at the
    # provider, must show on the order), "refund_fail" (a refund at the provider that fails
    # there, must wait for an operator; the chaos operator resolves it) or "order_cancel" (the
    # buyer cancels the order while its parcel's tracking moves), "ops_refund" (an operator
    # refunds part of the order, see tools/chaos/moneyback.py) or "return" (the buyer returns
    # part of the delivered order).
    after: str = ""
    shipping: bool = False  # pays a shipping rate chosen from the cart's quotes, taxed

    @property
    def address(self) -> dict[str, str]:
        """Where the order ships: a taxed state for the shipping-rate scenarios."""
        return TAXED_ADDRESS if self.shipping else ADDRESS


def _scenario(name: str, method: str, *expect: Outcome, **kwargs: Any) -> Scenario:
    return Scenario(name, method, frozenset(expect), **kwargs)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _scenario(
            "visa", "pm_card_visa", COMPLETED, weight=30, cancellable=True, tok_alias="tok_visa"
        ),
        _scenario("declined", "pm_card_chargeDeclined", DECLINED, weight=5),
        _scenario(
            "insufficient_funds", "pm_card_chargeDeclinedInsufficientFunds", DECLINED, weight=4
        ),
        _scenario(
            "3ds",
            "pm_card_threeDSecure2Required",
            COMPLETED,
            weight=10,
            approve=True,
            cancellable=True,
            tok_alias="tok_3ds",
        ),
        _scenario("3ds_fail", "pm_sandbox_3ds_fail", DECLINED, weight=5, approve=True),
        _scenario("async", "pm_sandbox_async", COMPLETED, weight=8, cancellable=True),
        _scenario("no_webhook", "pm_sandbox_no_webhook", EXPIRED, weight=4, cancellable=True),
        _scenario("flaky", "pm_sandbox_flaky", COMPLETED, weight=5, cancellable=True),
        _scenario("capture_fails", "pm_sandbox_capture_fails", DECLINED, weight=4),
        _scenario("unknown_method", "pm_card_chaosUnknownMethod", DECLINED, weight=3),
        _scenario("zero_total", "pm_card_visa", COMPLETED, weight=5, coupon="free"),
        _scenario(
            "decline_retry",
            "pm_card_chargeDeclined",
            COMPLETED,
            weight=4,
            retry_with="pm_card_visa",
        ),
        _scenario("lost", "pm_card_chargeDeclinedLostCard", DECLINED, weight=1, generic=True),
        _scenario("stolen", "pm_card_chargeDeclinedStolenCard", DECLINED, weight=1, generic=True),
        _scenario(
            "fraudulent", "pm_card_chargeDeclinedFraudulent", DECLINED, weight=1, generic=True
        ),
        # Completed, then refunded in full at the provider's dashboard: the refund fails there.
        _scenario("refund_fail", "pm_card_refundFail", COMPLETED, weight=3, after="refund_fail"),
        _scenario("dispute", "pm_card_createDispute", COMPLETED, weight=3, after="dispute"),
        _scenario(
            "dashboard_refund", "pm_card_visa", COMPLETED, weight=3, after="dashboard_refund"
        ),
        # Completed, then the buyer cancels the order at once or a moment later: before the
        # carrier has the parcel (cancelled, refunded, restocked) or after (409 already_shipped).
        _scenario("order_cancel", "pm_card_visa", COMPLETED, weight=4, after="order_cancel"),
        # A shipping rate chosen from the cart's quotes: the order's total includes it.
        _scenario("shipping_rate", "pm_card_visa", COMPLETED, weight=3, shipping=True),
        # Completed, then an operator refunds part of it (sometimes the same request several
        # times at once, sometimes more than is left); on pm_card_refundFail that refund fails
        # at the provider and waits for the operator.
        _scenario(
            "ops_refund", "pm_card_visa", COMPLETED, weight=3, after="ops_refund", shipping=True
        ),
        _scenario("ops_refund_fail", "pm_card_refundFail", COMPLETED, weight=2, after="ops_refund"),
        # Completed with a discount and a shipping rate, delivered, then part of it returned.
        _scenario(
            "return",
            "pm_card_visa",
            COMPLETED,
            weight=4,
            coupon="discount",
            shipping=True,
            after="return",
        ),
        # The races (not drawn by weight; see plan()).
        _scenario("coupon_race", "pm_card_visa", COMPLETED, COUPON_EXHAUSTED),
        _scenario("scarce_stock", "pm_card_visa", COMPLETED, OUT_OF_STOCK),
        # After each fault: the checkout that shows the platform serves again.
        _scenario("probe", "pm_card_visa", COMPLETED),
    )
}
SINGLES = [s for s in SCENARIOS.values() if s.weight > 0]


@dataclass
class Buyer:
    """A registered user with a token and a cart ready to check out."""

    user_id: str
    headers: dict[str, str]
    cart_id: str


@dataclass
class Plan:
    """One checkout to run: what, when (seconds after the load starts), and who cancels."""

    index: int
    scenario: Scenario
    at_s: float
    cancel: str = ""  # "", "buyer" or "operator"
    cancel_after_s: float = 0.0  # a buyer's cancel: this long after the checkout was accepted
    group: str | None = None  # the race it is part of
    alias: bool = False  # pay with `{provider: "sandbox", token}`
    lines: list[tuple[str, int]] = field(default_factory=list)  # (variant id, quantity)
    coupon_code: str | None = None
    buyer: Buyer | None = None
    rate_id: str | None = None  # the chosen shipping rate (set once, before the first start)

    def body(self) -> dict[str, Any]:
        """The POST /v1/checkouts body (the same on every retry)."""
        assert self.buyer is not None
        scenario = self.scenario
        payment = (
            {"provider": "sandbox", "token": scenario.tok_alias}
            if self.alias and scenario.tok_alias
            else {"provider": "stripe", "payment_method": scenario.method}
        )
        body: dict[str, Any] = {
            "cart_id": self.buyer.cart_id,
            "shipping_address": scenario.address,
            "payment": payment,
        }
        if scenario.retry_with:
            body["on_decline"] = "retry"
        if self.coupon_code:
            body["coupon_code"] = self.coupon_code
        if self.rate_id:
            body["shipping_rate_id"] = self.rate_id
        return body


@dataclass
class Catalog:
    """What the load buys: plenty of stock, scarce variants and limited coupons per race."""

    operator: dict[str, str]
    plentiful: list[str]
    free_coupon: str
    scarce: dict[str, str] = field(default_factory=dict)  # race group -> variant id
    limited: dict[str, str] = field(default_factory=dict)  # race group -> coupon code
    capacity: dict[str, int] = field(default_factory=dict)  # race group -> units or redemptions
    discount_coupon: str | None = None  # 15 %, unlimited (the returns' discounted orders)


def _groups(total: int, size: int) -> list[int]:
    """`total` racers in as few groups of at most `size` as possible, evenly sized."""
    if total <= 0:
        return []
    count = math.ceil(total / size)
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


def _races(n: int) -> list[tuple[Scenario, list[int]]]:
    """The race groups of a load of `n`: none below 20 checkouts (too few to race)."""
    if n < 20:
        return []
    return [
        (SCENARIOS["coupon_race"], _groups(round(n * COUPON_SHARE), COUPON_BUYERS)),
        (SCENARIOS["scarce_stock"], _groups(round(n * SCARCE_SHARE), SCARCE_BUYERS)),
    ]


def _cancel(plan: Plan, rng: random.Random) -> None:
    """Maybe make `plan` a cancel: a buyer's at a random moment; an operator's as soon as the
    status shows the capture has started, or else at a random moment (which, a checkout taking
    a few seconds, often falls after the capture too: the refund path)."""
    if not plan.scenario.cancellable:
        return
    draw = rng.random()
    if draw < BUYER_CANCEL_SHARE:
        plan.cancel = "buyer"
        longest = 15.0 if plan.scenario.name == "no_webhook" else 3.0
        plan.cancel_after_s = rng.uniform(0.0, longest)
    elif draw < BUYER_CANCEL_SHARE + OPERATOR_CANCEL_SHARE and not plan.scenario.approve:
        plan.cancel = "operator"
        plan.cancel_after_s = rng.uniform(0.3, 3.0)


def plan(n: int, rate: float, rng: random.Random) -> list[Plan]:
    """`n` checkouts started at `rate` per second on average: every single scenario at least
    once (when `n` allows), the rest drawn by weight and spread evenly, and the race groups each
    starting at one moment within them."""
    races = _races(n)
    singles_n = n - sum(sum(sizes) for _, sizes in races)
    scenarios = list(SINGLES[: max(0, singles_n)])
    weights = [s.weight for s in SINGLES]
    scenarios += rng.choices(SINGLES, weights, k=max(0, singles_n - len(scenarios)))
    rng.shuffle(scenarios)
    span = n / rate
    # The singles spread over the whole span, races among them: the last checkouts to start are
    # singles, so the faults paced with the load's tail (run.Pacer) meet work in flight too.
    step = span / max(1, len(scenarios))
    plans = [Plan(i, s, at_s=i * step) for i, s in enumerate(scenarios)]
    for scenario, sizes in races:
        for g, size in enumerate(sizes):
            group, at_s = f"{scenario.name}-{g + 1}", rng.uniform(0.1 * span, 0.9 * span)
            plans += [Plan(0, scenario, at_s=at_s, group=group) for _ in range(size)]
    plans.sort(key=lambda p: p.at_s)
    for index, one in enumerate(plans):
        one.index = index
        one.alias = rng.random() < 0.1
        _cancel(one, rng)
    return plans


def _coupon_body(code: str, percent: str, max_redemptions: int | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "code": code,
        "discount_type": "percentage",
        "discount_value": percent,
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_to": (now + timedelta(days=7)).isoformat(),
        **({"max_redemptions": max_redemptions} if max_redemptions else {}),
    }


class Shop:
    """Sets up the catalog and the buyers through the HTTP API, as an operator and shoppers do."""

    def __init__(self, api: PatientClient, run_id: str) -> None:
        self.api = api
        self.run_id = run_id

    async def _ok(self, method: str, url: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        answer = await self.api.send(method, url, **kwargs)
        if answer.response.status_code != expect:
            raise RuntimeError(
                f"{method} {url}: {answer.response.status_code} {answer.response.text}"
            )
        body: dict[str, Any] = answer.response.json()
        return body

    async def token(self, user_id: str, *scopes: str) -> dict[str, str]:
        """Authorization headers for `user_id` (POST /v1/dev/tokens, ENV=dev)."""
        minted = await self._ok(
            "POST", "/v1/dev/tokens", 200, json={"user_id": user_id, "scopes": list(scopes)}
        )
        return {"Authorization": f"Bearer {minted['access_token']}"}

    async def variant(self, operator: dict[str, str], price: str, stock: int) -> str:
        """A product with one variant at `price`, `stock` units on the shelf."""
        sku = f"CHAOS-{uuid.uuid4().hex[:12].upper()}"
        product = await self._ok(
            "POST",
            "/v1/products",
            201,
            headers=operator,
            json={
                "seller_id": SELLER_ID,
                "title": f"Chaos item {sku}",
                "status": "active",
                "variants": [{"sku": sku, "prices": [{"currency": CURRENCY, "amount": price}]}],
            },
        )
        variant_id: str = product["variants"][0]["id"]
        await self._ok(
            "PUT", f"/v1/inventory/{variant_id}", 200, headers=operator, json={"total_stock": stock}
        )
        return variant_id

    async def coupon(self, operator: dict[str, str], percent: str, limit: int | None) -> str:
        """A percentage coupon valid now, with at most `limit` redemptions."""
        code = f"CHAOS{uuid.uuid4().hex[:10].upper()}"
        await self._ok(
            "POST", "/v1/coupons", 201, headers=operator, json=_coupon_body(code, percent, limit)
        )
        return code

    async def catalog(self, plans: list[Plan], plentiful: int = 8) -> Catalog:
        """Variants with plenty of stock, and per race group its scarce variant or coupon."""
        operator = await self.token(OPERATOR_ID, "operator")
        variants = [
            await self.variant(operator, f"{9 + 7 * i}.{90 + i}", 10_000_000)
            for i in range(plentiful)
        ]
        catalog = Catalog(operator, variants, await self.coupon(operator, "100", None))
        catalog.discount_coupon = await self.coupon(operator, "15", None)
        for group in sorted({p.group for p in plans if p.group}):
            if group.startswith("scarce"):
                catalog.scarce[group] = await self.variant(operator, "24.50", SCARCE_STOCK)
                catalog.capacity[group] = SCARCE_STOCK
            else:
                catalog.limited[group] = await self.coupon(operator, "10", COUPON_LIMIT)
                catalog.capacity[group] = COUPON_LIMIT
        return catalog

    async def buyer(self, one: Plan, catalog: Catalog, rng: random.Random) -> None:
        """Register the plan's buyer and fill a cart for it (scarce races buy one unit)."""
        email = f"buyer-{self.run_id}-{one.index}-{uuid.uuid4().hex[:6]}@example.com"
        user = await self._ok("POST", "/v1/users", 201, json={"email": email})
        headers = await self.token(user["id"], "customer")
        cart = await self._ok(
            "POST", "/v1/carts", 201, headers=headers, json={"currency": CURRENCY}
        )
        if one.group and one.group in catalog.scarce:
            one.lines = [(catalog.scarce[one.group], 1)]
        else:
            picked = rng.sample(catalog.plentiful, k=rng.choice((1, 1, 2)))
            one.lines = [(variant, rng.randint(1, 3)) for variant in picked]
        for variant_id, quantity in one.lines:
            await self._add(cart["id"], headers, variant_id, quantity)
        if one.scenario.coupon == "free":
            one.coupon_code = catalog.free_coupon
        elif one.scenario.coupon == "discount":
            one.coupon_code = catalog.discount_coupon
        elif one.group and one.group in catalog.limited:
            one.coupon_code = catalog.limited[one.group]
        one.buyer = Buyer(user["id"], headers, cart["id"])

    async def _add(
        self, cart_id: str, headers: dict[str, str], variant_id: str, quantity: int
    ) -> None:
        """Add a line; if a retried add was applied twice (lines merge), set the quantity back."""
        cart = await self._ok(
            "POST",
            f"/v1/carts/{cart_id}/items",
            200,
            headers=headers,
            json={"variant_id": variant_id, "quantity": quantity},
        )
        line = next(item for item in cart["items"] if item["variant_id"] == variant_id)
        if line["quantity"] != quantity:
            await self._ok(
                "PATCH",
                f"/v1/carts/{cart_id}/items/{line['id']}",
                200,
                headers=headers,
                json={"quantity": quantity},
            )
