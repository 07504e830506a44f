"""What a fast-tier test drives: a shop starting checkouts, each run with its own world."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.shared import MoneyValue
from tests.workflows.fast.standins import CURRENCY, Standins
from tests.workflows.fast.world import World
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient, CheckoutHandle
from workflows.checkout.contract import FINAL, StepName
from workflows.checkout.models import CheckoutInput, CheckoutStatusBody

# How long a test waits (real time) for a checkout to reach a state it polls for.
WITHIN_S = 10.0
POLL_S = 0.02
NEEDS_ATTENTION = StepName.NEEDS_ATTENTION.value


@dataclass
class Run:
    """One checkout on the fast tier: its input, handle and world."""

    input: CheckoutInput
    handle: CheckoutHandle
    world: World
    checkouts: CheckoutClient

    @property
    def id(self) -> uuid.UUID:
        """The checkout id."""
        return self.input.checkout_id

    def input_window(self) -> timedelta:
        """The payment window of the checkout."""
        return timedelta(seconds=self.input.payment_timeout_s)

    async def status(self) -> CheckoutStatusBody:
        """The `status` query."""
        return await self.checkouts.status(self.id)

    async def compensations(self) -> list[str]:
        """The compensations that ran, in order."""
        return await self.checkouts.compensations(self.id)

    async def wait_for(
        self,
        status: str | None = None,
        step: str | None = None,
        until: Callable[[CheckoutStatusBody], bool] | None = None,
    ) -> CheckoutStatusBody:
        """Poll the status query until the checkout is at `status` and `step` (and `until`
        holds), in real time: the server skips no time meanwhile (skipping it by hand while a
        run was busy left runs stuck on the test server, their workflow task never answered)."""
        deadline = asyncio.get_running_loop().time() + WITHIN_S
        while True:
            body = await self.status()
            if status in (None, body.status) and step in (None, body.step):
                if until is None or until(body):
                    return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still {body.status} at {body.step}, wanted {status} {step}")
            await asyncio.sleep(POLL_S)

    async def ended_or_parked(self) -> CheckoutStatusBody:
        """The body once the checkout has ended or waits at needs_attention.

        Polled, not awaited: awaiting the result lets the test server skip time, and a
        checkout waiting for an operator has no timer to skip to (the server would skip
        until the run times out)."""
        body = await self.wait_for(until=lambda b: b.status in FINAL or b.step == NEEDS_ATTENTION)
        return await self.handle.result() if body.status in FINAL else body

    def recorded(self) -> CheckoutStatusBody | None:
        """The last status body the checkout recorded of itself (what the API serves)."""
        bodies = [
            r.body
            for r in self.world.records
            if isinstance(getattr(r, "body", None), CheckoutStatusBody)
        ]
        return bodies[-1] if bodies else None


@dataclass
class Shop:
    """Starts checkouts on the fast tier, each with its own world."""

    env: WorkflowEnvironment
    standins: Standins

    async def start(
        self,
        *,
        coupon: bool = False,
        payment_timeout_s: int = 900,
        on_decline: str = "fail",
        tax: bool = False,
        shipping: Decimal | None = None,
        **world: Any,
    ) -> Run:
        """A new world (its fields from `world`) and a started checkout acting on it; `tax`:
        taxed (TAX_PROVIDER=stripe), `shipping`: the price of a chosen shipping rate."""
        fresh = self.standins.world(**world)
        checkout = new_input(
            user_id=uuid.uuid4(),
            cart_id=uuid.uuid4(),
            coupon_code="fast10" if coupon else None,
            payment_timeout=timedelta(seconds=payment_timeout_s),
            checkout_id=fresh.checkout_id,
        ).model_copy(update={"on_decline": on_decline, "tax": tax})
        if shipping is not None:
            rate = MoneyValue(amount=shipping, currency=CURRENCY)
            checkout = checkout.model_copy(
                update={"shipping_rate_id": uuid.uuid4(), "shipping": rate}
            )
        checkouts = CheckoutClient(self.env.client)
        return Run(checkout, await checkouts.start(checkout), fresh, checkouts)


# The compensations of a checkout in the order they are registered: each before its step runs.
UNDO = (
    "unlock_cart",
    "release_coupon",
    "release_inventory",
    "cancel_order",
    "void_payment",
    "cancel_shipment",
)


def undone(registered: int, *, coupon: bool) -> list[str]:
    """The compensations expected to run, newest first, when the first `registered` of UNDO
    are registered (without a coupon, none is reserved and none released)."""
    names = [name for name in UNDO[:registered] if coupon or name != "release_coupon"]
    return names[::-1]
