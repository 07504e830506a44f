"""What happens to a checkout after its end, as the people around the platform do it.

A dispute the buyer's bank opens must show in `GET /v1/ops/disputes`; a refund made directly in
the provider's dashboard (the official Stripe SDK against the sandbox) must show on the order as
`refunded_amount` and `partially_refunded` or `refunded`; a refund that fails at the provider must
wait in `GET /v1/ops/refunds/failed` (a full dashboard refund of a `pm_card_refundFail` payment),
where the chaos operator resolves it as an operator would; a buyer cancelling the order at once
or a moment after the checkout completed (`POST /v1/orders/{id}/cancel`), while the carrier's
tracking moves the parcel, must find it `cancelled` (202: refunded, restocked) or, once the
carrier has the parcel, be told 409 `already_shipped` with the order `shipped` or `delivered`.
Each step writes what it saw on the record (`aftersale`: "ok", or what went wrong) for the audit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import stripe
from stripe.params import RefundCreateParams

from tools.chaos.client import PatientClient
from tools.chaos.journey import Record

# How long the after-sale may take to show through the API (the provider's delays, a fault).
SHOW_WITHIN_S = 120.0
POLL_S = 1.0
# A buyer cancels the order at once (half of them) or up to this long after seeing the checkout
# completed: the chaos stack's parcels go in transit 4 s after the label (SANDBOX_CARRIER_STEP_S).
ORDER_CANCEL_WITHIN_S = 8.0
# What the order shows after the buyer's cancel, by its answer.
AFTER_ORDER_CANCEL = {
    "cancelled": frozenset({"cancelled"}),
    "already_shipped": frozenset({"shipped", "delivered"}),
}
# Status of an order once some or all of its money went back to the buyer.
REFUNDED_STATUSES = {True: "refunded", False: "partially_refunded"}
CENT = Decimal("0.01")
# The SDK logs every request at info: the run's output is for the run's own events.
logging.getLogger("stripe").setLevel(logging.WARNING)


async def until(probe: Callable[[], Awaitable[Any]], within_s: float) -> Any:
    """Poll `probe` until it answers something truthy; None after `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(POLL_S)
    return None


class AfterSale:
    """Runs the after-sale step of a record's scenario (`Scenario.after`)."""

    def __init__(
        self,
        api: PatientClient,
        operator: dict[str, str],
        psp_url: str,
        api_key: str,
        rng: random.Random,
    ) -> None:
        self.api = api
        self.operator = operator
        self.psp_url = psp_url
        self.api_key = api_key
        self.rng = rng

    async def run(self, record: Record) -> None:
        """The step for this record, if its checkout ended where the step applies."""
        after = record.plan.scenario.after
        if after == "dispute" and record.status == "completed":
            record.aftersale = await self.dispute_shows(record)
        elif after == "dashboard_refund" and record.status == "completed" and record.order_id:
            record.aftersale = await self.dashboard_refund(record, record.order_id)
        elif after == "refund_fail" and record.status == "completed":
            record.aftersale = await self.refund_then_resolve(record)
        elif after == "order_cancel" and record.status == "completed" and record.order_id:
            record.aftersale = await self.cancel_order(record, record.order_id)

    async def _ops(self, path: str) -> list[dict[str, Any]]:
        answer = await self.api.send("GET", path, headers=self.operator)
        if answer.response.status_code != 200:
            return []
        data: list[dict[str, Any]] = answer.response.json()["data"]
        return data

    async def dispute_shows(self, record: Record) -> str:
        """The dispute of this checkout appears in the operators' list."""

        async def probe() -> bool:
            disputes = await self._ops("/v1/ops/disputes?limit=500")
            return any(d["checkout_id"] == record.checkout_id for d in disputes)

        if await until(probe, SHOW_WITHIN_S):
            return "ok"
        return f"no dispute in /v1/ops/disputes after {SHOW_WITHIN_S:.0f}s"

    async def refund_then_resolve(self, record: Record) -> str:
        """Refund the whole payment at the provider's dashboard; on this card the refund fails
        there, so it must wait for an operator, who settles it by hand and resolves it."""
        assert record.checkout_id is not None
        intent = await until(lambda: self._intent(str(record.checkout_id)), SHOW_WITHIN_S)
        if intent is None:
            return "no intent in the provider's ledger"
        if not await self._refund_at_provider(intent, None, f"chaos-{record.key}-refund"):
            return "the provider's dashboard refused the refund"

        async def probe() -> dict[str, Any] | None:
            waiting = await self._ops("/v1/ops/refunds/failed?limit=500")
            return next((r for r in waiting if r["checkout_id"] == record.checkout_id), None)

        failed = await until(probe, SHOW_WITHIN_S)
        if failed is None:
            return f"no failed refund in /v1/ops/refunds/failed after {SHOW_WITHIN_S:.0f}s"
        resolved = await self._resolve_refund(failed["id"])
        if resolved.status_code != 200:
            return f"resolve answered {resolved.status_code}: {resolved.text[:200]}"
        return "ok"

    async def _resolve_refund(self, refund_id: str) -> httpx.Response:
        """The operator records a failed refund settled (by a bank transfer)."""
        answer = await self.api.send(
            "POST",
            f"/v1/ops/refunds/{refund_id}/resolve",
            headers=self.operator,
            json={"note": "chaos: refunded by bank transfer"},
        )
        return answer.response

    async def _intent(self, checkout_id: str) -> str | None:
        async with httpx.AsyncClient(base_url=self.psp_url, timeout=10) as http:
            try:
                rows = (await http.get("/v1/ledger")).json()["data"]
            except (httpx.HTTPError, ValueError):
                return None
        for row in rows:
            if (row.get("metadata") or {}).get("checkout_id") == checkout_id:
                intent: str = row["payment_intent"]
                return intent
        return None

    async def _refund_at_provider(self, intent: str, cents: int | None, key: str) -> bool:
        """One refund at the provider's dashboard, of `cents` or all (retried through a fault
        with one Idempotency-Key)."""
        client = stripe.StripeClient(
            api_key=self.api_key, base_addresses={"api": self.psp_url}, max_network_retries=0
        )

        async def attempt() -> bool:
            try:
                params: RefundCreateParams = {"payment_intent": intent}
                if cents is not None:
                    params["amount"] = cents
                await client.v1.refunds.create_async(params, {"idempotency_key": key})
            except stripe.StripeError:
                return False
            return True

        return bool(await until(attempt, SHOW_WITHIN_S))

    async def dashboard_refund(self, record: Record, order_id: str) -> str:
        """Refund part or all of the order at the provider; the order must show it."""
        assert record.checkout_id is not None
        assert record.total is not None
        intent = await until(lambda: self._intent(str(record.checkout_id)), SHOW_WITHIN_S)
        if intent is None:
            return "no intent in the provider's ledger"
        total = Decimal(record.total)
        full = self.rng.random() < 0.5 or total < Decimal("1.00")
        amount = total if full else (total / 2).quantize(CENT)
        record.dashboard_refunded = str(amount)
        cents = int(amount * 100)
        if not await self._refund_at_provider(intent, cents, f"chaos-{record.key}-refund"):
            return "the provider's dashboard refused the refund"
        want = REFUNDED_STATUSES[full]

        async def probe() -> dict[str, Any] | None:
            answer = await self.api.send("GET", f"/v1/orders/{order_id}", headers=self.operator)
            body: dict[str, Any] = answer.response.json()
            shown = answer.response.status_code == 200 and body["status"] == want
            return body if shown and Decimal(body["refunded_amount"]) == amount else None

        if await until(probe, SHOW_WITHIN_S) is None:
            return f"the order does not show {want} with refunded_amount {amount}"
        return "ok"

    async def cancel_order(self, record: Record, order_id: str) -> str:
        """The buyer cancels the order a random moment after the checkout completed; the order
        must then show what the answer said (the audit's invariants check the money, the stock
        and the shipment of a cancelled order)."""
        assert record.plan.buyer is not None
        if self.rng.random() < 0.5:
            await asyncio.sleep(self.rng.uniform(0.0, ORDER_CANCEL_WITHIN_S))
        answer = await self.api.send(
            "POST",
            f"/v1/orders/{order_id}/cancel",
            headers={**record.plan.buyer.headers, "Idempotency-Key": f"{record.key}-order"},
        )
        response = answer.response
        code = response.json().get("code") if response.status_code == 409 else None
        if response.status_code == 202:
            record.order_cancel = "cancelled"
        elif code == "already_shipped":
            record.order_cancel = "already_shipped"
        else:
            return f"the order's cancel answered {response.status_code} {response.text[:200]}"
        want = AFTER_ORDER_CANCEL[record.order_cancel]
        seen: list[str] = []

        async def probe() -> bool:
            shown = await self.api.send("GET", f"/v1/orders/{order_id}", headers=self.operator)
            seen[:] = [shown.response.json().get("status", str(shown.response.status_code))]
            return shown.response.status_code == 200 and seen[0] in want

        if not await until(probe, SHOW_WITHIN_S):
            return f"cancel answered {record.order_cancel}, the order is still {seen}"
        return "ok"
