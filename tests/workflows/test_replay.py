"""Replay guards every workflow change: recorded histories must replay on today's code.

`tests/workflows/histories/*.json` are histories recorded from real runs of every path a checkout
may be in when a release rolls out, long-lived ones above all: a 3-D Secure wait, a checkout
parked at needs_attention (retried, parked again, resolved, with a provider event meanwhile), an
expiry, an operator's cancel after the capture, a zero total, and the plain paths. A change that
makes one of them fail to replay needs a patch (`workflow.patched`, see docs/deployment.md).

`RECORD_HISTORIES=1` writes this session's histories as `<scenario>.<RECORDED_AS>.json`, never
overwriting a file: a patched change records its own set under its patch id, and the histories
of every earlier path stay and keep replaying. A path added after 0.1.0 (LATER) is recorded
under the name of the change that added it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from kit.codec import data_converter
from kit.settings import get_settings
from tests.api.shop import injected_fault, release_fails
from tests.platform import Platform
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient
from workflows.checkout.contract import WORKFLOW_TYPE
from workflows.checkout.models import (
    CheckoutInput,
    CheckoutStatusBody,
    MoneyOutcome,
    PaymentEvent,
)
from workflows.checkout.workflow import CheckoutWorkflow
from workflows.order_cancel.workflow import OrderCancelWorkflow
from workflows.order_refund.workflow import OrderRefundWorkflow
from workflows.returns.workflow import ReturnWorkflow

HISTORIES = Path(__file__).parent / "histories"
# The set recorded last, named for the patch it was recorded under (`run-watch`: one timer per run
# for its first second); the first release's (0.1.0) and every later set keep replaying.
RECORDED_AS = "run-watch"
SCENARIOS = (
    "happy",
    "happy_coupon",
    "zero_total",
    "declined",
    "three_ds",
    "cancelled",
    "expired",
    "operator_cancel_after_capture",
    "needs_attention_retry_resolve",
)
# Paths added after 0.1.0, each recorded under the name of the change that added it.
LATER = {"decline_retry": "decline-retry"}
pytestmark = pytest.mark.timeout(240)

Handle = WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]


def _replayer() -> Replayer:
    return Replayer(
        workflows=[CheckoutWorkflow, OrderCancelWorkflow, OrderRefundWorkflow, ReturnWorkflow],
        data_converter=data_converter(get_settings().temporal),
    )


async def at_step(handle: Handle, step: str, within_s: float = 60) -> CheckoutStatusBody:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        body: CheckoutStatusBody = await handle.query(CheckoutWorkflow.status)
        if body.step == step:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"still at {body.step}"
        await asyncio.sleep(0.1)


async def _ended(handle: Handle, status: str) -> Handle:
    body = await handle.result()
    assert body.status == status, body
    return handle


async def _three_ds(platform: Platform, *, approve: bool) -> Handle:
    _, handle = await platform.checkout(token="tok_3ds")
    waiting = await platform.wait_status(handle, "requires_action")
    if not approve:
        await handle.signal(CheckoutWorkflow.cancel)
        return await _ended(handle, "cancelled")
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    async with httpx.AsyncClient() as http:
        await http.get(waiting.payment.next_action.url)
    return await _ended(handle, "completed")


async def _expired(platform: Platform) -> Handle:
    variant = await platform.seed.variant()
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_no_webhook")
    short = checkout.model_copy(update={"payment_timeout_s": 3, "payment_recheck_s": 1})
    return await _ended(await platform.start(short), "expired")


async def _operator_cancel_after_capture(platform: Platform) -> Handle:
    """The booking's record keeps failing (transient): the operator cancels; refunded."""
    checkout, handle = await platform.checkout()
    fault = injected_fault(
        platform.databases["shipping"],
        "shipments",
        f"ROW.checkout_id = '{checkout.checkout_id}'",
        sqlstate="40001",
        on="INSERT",
    )
    async with fault:
        await at_step(handle, "create_shipment")
        client = CheckoutClient(platform.client)
        update_id = f"operator_cancel:{checkout.checkout_id}:test"
        first = await client.force_cancel(checkout.checkout_id, update_id)
        # A retried call (the same id) answers the first call's result, not a 409.
        again = await client.force_cancel(checkout.checkout_id, update_id)
    assert first.money == MoneyOutcome.REFUNDED, first
    assert again == first
    return await _ended(handle, "cancelled")


async def _decline_retry(platform: Platform) -> Handle:
    """`on_decline: retry`: declined, waits for another method, completes with it."""
    variant = await platform.seed.variant()
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_declined")
    handle = await platform.start(checkout.model_copy(update={"on_decline": "retry"}))
    await platform.wait_status(handle, "requires_payment_method")
    await CheckoutClient(platform.client).retry_payment(
        checkout.checkout_id, "pm_card_visa", "payment:1"
    )
    return await _ended(handle, "completed")


async def _needs_attention(platform: Platform) -> Handle:
    """Parked; retried while the cause is still there (parked again); a provider event arrives
    meanwhile and is settled; resolved by hand."""
    variant = await platform.seed.variant(stock=3)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_declined")
    client = CheckoutClient(platform.client)
    async with release_fails(platform, str(variant.variant_id)):
        handle = await platform.start(checkout)
        await at_step(handle, "needs_attention")
        await client.retry_compensation(checkout.checkout_id, "retry:1")
        await at_step(handle, "needs_attention")
        intent = (await platform.ledger(checkout.checkout_id))[0]["payment_intent"]
        late = PaymentEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type="payment_intent.amount_capturable_updated",
            intent=intent,
        )
        await handle.signal(CheckoutWorkflow.payment_event, late)
        await client.resolve(checkout.checkout_id, "released by hand, ticket OPS-0", "resolve:1")
    return await _ended(handle, "failed")


async def _scenarios(platform: Platform) -> dict[str, WorkflowHistory]:
    coupon = await platform.seed.coupon(percent="10")
    free = await platform.seed.coupon(percent="100")

    async def checkout(status: str, **kwargs: Any) -> Handle:
        _, handle = await platform.checkout(**kwargs)
        return await _ended(handle, status)

    runs: dict[str, Callable[[], Awaitable[Handle]]] = {
        "happy": lambda: checkout("completed"),
        "happy_coupon": lambda: checkout("completed", coupon_code=coupon),
        "zero_total": lambda: checkout("completed", coupon_code=free),
        "declined": lambda: checkout("failed", token="tok_declined"),
        "three_ds": lambda: _three_ds(platform, approve=True),
        "cancelled": lambda: _three_ds(platform, approve=False),
        "expired": lambda: _expired(platform),
        "operator_cancel_after_capture": lambda: _operator_cancel_after_capture(platform),
        "needs_attention_retry_resolve": lambda: _needs_attention(platform),
        "decline_retry": lambda: _decline_retry(platform),
    }
    assert set(runs) == {*SCENARIOS, *LATER}
    handles = await asyncio.gather(*(run() for run in runs.values()))
    return {name: await handle.fetch_history() for name, handle in zip(runs, handles, strict=True)}


async def test_this_sessions_histories_replay(platform: Platform) -> None:
    scenarios = await _scenarios(platform)
    if os.environ.get("RECORD_HISTORIES") == "1":
        for name, history in scenarios.items():
            path = HISTORIES / f"{name}.{LATER.get(name, RECORDED_AS)}.json"
            if not path.exists():
                path.write_text(history.to_json())
    histories = [*scenarios.values()]
    histories += [await handle.fetch_history() for handle in platform.histories[:30]]

    replayer = _replayer()
    for history in histories:
        await replayer.replay_workflow(history)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_histories_replay(path: Path) -> None:
    text = await asyncio.to_thread(path.read_text)
    history = WorkflowHistory.from_json(f"checkout-{path.stem}", text)
    await _replayer().replay_workflow(history)


def test_every_long_lived_path_was_recorded() -> None:
    recorded = {path.name for path in HISTORIES.glob("*.json")}
    wanted = {f"{name}.{RECORDED_AS}.json" for name in SCENARIOS}
    wanted |= {f"{name}.{change}.json" for name, change in LATER.items()}
    missing = wanted - recorded
    assert not missing, f"record them with RECORD_HISTORIES=1: {sorted(missing)}"


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class _IncompatibleCheckout(CheckoutWorkflow):
    """Today's checkout with one unpatched change: a timer before anything else."""

    @workflow.run
    async def run(self, input: CheckoutInput) -> CheckoutStatusBody:
        await workflow.sleep(1)
        return await super().run(input)


async def test_an_unpatched_change_fails_the_replay() -> None:
    path = HISTORIES / f"happy.{RECORDED_AS}.json"
    history = WorkflowHistory.from_json("checkout-happy", await asyncio.to_thread(path.read_text))
    replayer = Replayer(
        workflows=[_IncompatibleCheckout], data_converter=data_converter(get_settings().temporal)
    )

    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
