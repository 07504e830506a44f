"""What the scenarios do to the platform: its HTTP API as a buyer and an operator would call it,
and the providers' sandbox as their users would (ledger, dashboard refunds, test helpers).

Every call is printed with its answer's status; every expectation goes through `check`, which
prints it and raises `Failed` when it does not hold.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

import httpx
import stripe

T = TypeVar("T")

# The operator of every scenario (development tokens name any user).
OPERATOR_ID = "00000000-0000-4000-8000-000000000001"
SELLER_ID = "00000000-0000-4000-8000-000000000002"
# How long a status may take to show (a provider's delay, a workflow's retries).
SHOW_WITHIN_S = 90.0
POLL_S = 0.5
FINAL = frozenset({"completed", "failed", "cancelled", "expired"})
CENT = Decimal("0.01")
US_ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "postal_code": "94105",
    "country": "US",
}


class Failed(Exception):
    """An expectation of the scenario did not hold."""


def check(holds: bool, what: str) -> None:
    """Print the expectation; raise Failed when it does not hold."""
    print(f"   {'ok  ' if holds else 'MISS'} {what}")
    if not holds:
        raise Failed(what)


def money(value: Any) -> Decimal:
    """An amount of an answer (a string in plain notation) as a Decimal."""
    return Decimal(str(value))


def cents(amount: Decimal) -> int:
    """A USD amount in the provider's minor unit."""
    return int((amount * 100).to_integral_value(rounding=ROUND_HALF_UP))


def until(probe: Callable[[], T | None], what: str, within_s: float = SHOW_WITHIN_S) -> T:
    """Poll `probe` until it answers something truthy; Failed after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not seen within {within_s:.0f}s")
        time.sleep(POLL_S)


@dataclass
class Buyer:
    """A customer of the platform with a bearer token."""

    id: str
    headers: dict[str, str]


class Platform:
    """The platform's API and the providers' sandbox, as their users reach them."""

    def __init__(self, api: httpx.Client, sandbox: httpx.Client, dashboard: stripe.StripeClient):
        self.api = api
        self.sandbox = sandbox
        self.dashboard = dashboard
        self._operator: dict[str, str] | None = None

    # -- HTTP --------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        json: Any = None,
        key: str | None = None,
        quiet: bool = False,
    ) -> httpx.Response:
        """One request to the API; printed with its status (and code, for a problem)."""
        sent = dict(headers or {})
        if key is not None:
            sent["Idempotency-Key"] = key
        response = self.api.request(method, path, headers=sent, json=json)
        if not quiet:
            code = problem_code(response)
            print(f"   {method} {path} -> {response.status_code}{f' {code}' if code else ''}")
        return response

    def ok(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        """A request that must answer 2xx; its JSON body."""
        response = self.call(method, path, headers, **kw)
        if response.status_code >= 300:
            raise Failed(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def token(self, user_id: str, scopes: list[str]) -> dict[str, str]:
        """A development bearer token (`POST /v1/dev/tokens`, ENV=dev)."""
        body = {"user_id": user_id, "scopes": scopes}
        answer = self.api.post("/v1/dev/tokens", json=body)
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    @property
    def operator(self) -> dict[str, str]:
        """The operator's headers."""
        if self._operator is None:
            self._operator = self.token(OPERATOR_ID, ["operator"])
        return self._operator

    # -- shop set-up -------------------------------------------------------------------------

    def buyer(self) -> Buyer:
        """A new customer."""
        email = f"showcase.{uuid.uuid4().hex[:12]}@example.com"
        user = self.api.post("/v1/users", json={"email": email})
        user.raise_for_status()
        user_id = user.json()["id"]
        return Buyer(user_id, self.token(user_id, ["customer"]))

    def variant(self, price: str, stock: int, title: str = "Linen shirt") -> str:
        """A product with one variant at `price` USD and `stock` units; its variant id."""
        sku = f"SHOW-{uuid.uuid4().hex[:10].upper()}"
        body = {
            "seller_id": SELLER_ID,
            "title": title,
            "status": "active",
            "variants": [
                {"sku": sku, "attributes": {}, "prices": [{"currency": "USD", "amount": price}]}
            ],
        }
        product = self.api.post("/v1/products", json=body, headers=self.operator)
        product.raise_for_status()
        variant_id: str = product.json()["variants"][0]["id"]
        stocked = self.api.put(
            f"/v1/inventory/{variant_id}", json={"total_stock": stock}, headers=self.operator
        )
        stocked.raise_for_status()
        return variant_id

    def cart(self, buyer: Buyer, lines: list[tuple[str, int]]) -> str:
        """A cart holding `quantity` of each variant; its id."""
        cart = self.api.post("/v1/carts", json={"currency": "USD"}, headers=buyer.headers)
        cart.raise_for_status()
        cart_id: str = cart.json()["id"]
        for variant_id, quantity in lines:
            item = {"variant_id": variant_id, "quantity": quantity}
            self.api.post(
                f"/v1/carts/{cart_id}/items", json=item, headers=buyer.headers
            ).raise_for_status()
        return cart_id

    def coupon(self, percent: str) -> str:
        """A `percent` % coupon; its code."""
        code = f"SHOW{uuid.uuid4().hex[:8].upper()}"
        body = {
            "code": code,
            "discount_type": "percentage",
            "discount_value": percent,
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_to": "2035-01-01T00:00:00Z",
            "max_redemptions": 10,
        }
        self.api.post("/v1/coupons", json=body, headers=self.operator).raise_for_status()
        return code

    def stock(self, variant_id: str) -> dict[str, int]:
        """`GET /v1/inventory/{id}`: total_stock, reserved, available."""
        answer = self.api.get(f"/v1/inventory/{variant_id}", headers=self.operator)
        answer.raise_for_status()
        body: dict[str, int] = answer.json()
        return body

    # -- checkouts ---------------------------------------------------------------------------

    def start_checkout(self, buyer: Buyer, cart_id: str, method: str, **extra: Any) -> str:
        """`POST /v1/checkouts` paying with `method`; the checkout's id."""
        body = {
            "cart_id": cart_id,
            "shipping_address": US_ADDRESS,
            "payment": {"provider": "stripe", "payment_method": method},
            **extra,
        }
        accepted = self.ok("POST", "/v1/checkouts", buyer.headers, json=body, key=str(uuid.uuid4()))
        checkout_id: str = accepted["checkout_id"]
        return checkout_id

    def settled(self, buyer: Buyer, checkout_id: str, leave: frozenset[str] = FINAL) -> Any:
        """The checkout once its status is in `leave` (waiting with `?wait_s`)."""

        def probe() -> Any:
            answer = self.api.get(
                f"/v1/checkouts/{checkout_id}", params={"wait_s": 10}, headers=buyer.headers
            )
            body = answer.json()
            return body if answer.status_code == 200 and body["status"] in leave else None

        body = until(probe, f"checkout {checkout_id} reaching {sorted(leave)}")
        failure = body.get("failure") or {}
        order = body.get("order") or {}
        print(
            f"   checkout {checkout_id}: {body['status']}"
            + (f" {failure.get('code')}" if failure else "")
            + (
                f", order {order.get('order_number')} total {order.get('total_amount')}"
                if order
                else ""
            )
        )
        return body

    def completed_order(self, buyer: Buyer, cart_id: str, method: str, **extra: Any) -> Any:
        """A checkout that must complete; its order (`GET /v1/orders/{id}`)."""
        checkout_id = self.start_checkout(buyer, cart_id, method, **extra)
        body = self.settled(buyer, checkout_id)
        check(body["status"] == "completed", f"checkout completed (it is {body['status']})")
        return self.order(body["order"]["id"])

    def order(self, order_id: str) -> Any:
        """`GET /v1/orders/{id}` as the operator."""
        answer = self.api.get(f"/v1/orders/{order_id}", headers=self.operator)
        answer.raise_for_status()
        return answer.json()

    def order_showing(self, order_id: str, what: str, probe: Callable[[Any], bool]) -> Any:
        """The order once `probe` holds of it."""
        return until(lambda: (lambda o: o if probe(o) else None)(self.order(order_id)), what)

    def ops_listed(self, path: str, order_id: str) -> Any:
        """The row of `order_id` in an operator list (`GET {path}`), once it is listed."""

        def probe() -> Any:
            answer = self.call("GET", f"{path}?limit=500", self.operator, quiet=True)
            return next((row for row in answer.json()["data"] if row["order_id"] == order_id), None)

        return until(probe, f"order {order_id} in GET {path}")

    # -- the providers -----------------------------------------------------------------------

    def ledger(self, checkout_id: str) -> list[dict[str, Any]]:
        """The sandbox ledger's intents of one checkout (amounts in cents)."""
        answer = self.sandbox.get("/v1/ledger", params={"checkout_id": checkout_id})
        answer.raise_for_status()
        rows: list[dict[str, Any]] = answer.json()["data"]
        return rows

    def dashboard_refund(self, intent: str, amount: Decimal) -> str:
        """A refund made in the provider's dashboard (the official SDK); its status."""
        refund = self.dashboard.v1.refunds.create(
            {"payment_intent": intent, "amount": cents(amount)},
            {"idempotency_key": f"showcase-{uuid.uuid4()}"},
        )
        print(f"   stripe: refunds.create({intent}, {cents(amount)}) -> {refund.status}")
        return str(refund.status)

    def tax_fault(self, mode: str) -> None:
        """The sandbox's Stripe Tax up (`none`) or down (`error`)."""
        answer = self.sandbox.post("/v1/test_helpers/tax/fault", json={"mode": mode})
        answer.raise_for_status()
        print(f"   sandbox: tax fault {mode} -> {answer.status_code}")

    def deliver(self, order: Any) -> Any:
        """Move the order's parcel to `delivered` with the carrier's test helper; the order once
        tracking has made it `delivered`."""
        label_url = order["shipments"][0]["label_url"]
        shipment = label_url.rsplit("/", 1)[-1].removesuffix(".pdf")
        for _ in range(4):
            moved = self.sandbox.post(f"/v2/test_helpers/shipments/{shipment}/advance")
            body = moved.json()
            status = (body.get("tracker") or {}).get("status") or body.get("status")
            print(f"   sandbox: advance {shipment} -> {status}")
            if status == "delivered":
                break
        return self.order_showing(
            order["id"], "order delivered", lambda o: o["status"] == "delivered"
        )


def problem_code(response: httpx.Response) -> str | None:
    """The stable `code` of a problem+json answer."""
    if response.status_code < 400:
        return None
    try:
        code = response.json().get("code")
    except ValueError:
        return None
    return str(code) if code else None
