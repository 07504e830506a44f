"""Clients that wait for a checkout to leave `processing` (`wait_settled`): answered with the
recorded body the moment it moves, two history events each (accepted, completed), none when
refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType

from tests.workflows.fast.harness import Run, Shop
from workflows.checkout.client import CheckoutNotRunning
from workflows.checkout.models import PaymentEvent

pytestmark = pytest.mark.timeout(60)

WAIT = timedelta(seconds=10)
UPDATE_EVENTS = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
)


async def _events(run: Run) -> list[int]:
    return [event.event_type for event in (await run.handle.fetch_history()).events]


async def test_waiting_clients_are_answered_when_the_status_moves(shop: Shop) -> None:
    run = await shop.start(payment="requires_action")

    # Sent while processing: answered once the buyer's link is recorded.
    answer = await run.checkouts.wait_settled(run.id, WAIT)
    assert answer is not None
    assert (answer.status, answer.step) == ("requires_action", "awaiting_payment")
    assert answer == run.recorded()  # what the API would read afterwards
    events = await _events(run)
    assert sum(kind in UPDATE_EVENTS for kind in events) == 2

    # Not processing: refused by the validator, so no update enters the history (Temporal's
    # server runs the validation in a workflow task it drops afterwards; the test server keeps
    # that task: three events at most).
    assert await run.checkouts.wait_settled(run.id, WAIT) is None
    refused = await _events(run)
    assert sum(kind in UPDATE_EVENTS for kind in refused) == 2
    assert len(refused) <= len(events) + 3

    await _approve(run)
    body = await run.handle.result()
    assert body.status == "completed"
    ended = await _events(run)
    assert sum(kind in UPDATE_EVENTS for kind in ended) == 2
    with pytest.raises(CheckoutNotRunning):  # ended: the API answers from the record
        await run.checkouts.wait_settled(run.id, WAIT)


async def _approve(run: Run) -> None:
    run.world.approve()
    intent = run.world.intent_id
    await run.checkouts.deliver_payment_event(
        run.id,
        PaymentEvent(id="evt_ok", type="payment_intent.amount_capturable_updated", intent=intent),
    )


async def test_a_wait_given_up_on_completes_with_the_run(shop: Shop) -> None:
    run = await shop.start(payment="requires_action")

    # Given up on at once: the update, if it was accepted, completes when the status moves
    # (the run does not end with it pending, nor fail because of it).
    assert await run.checkouts.wait_settled(run.id, timedelta(milliseconds=1)) is None
    await run.wait_for("requires_action")
    await _approve(run)
    assert (await run.handle.result()).status == "completed"

    events = await _events(run)
    accepted, completed = (events.count(kind) for kind in UPDATE_EVENTS)
    assert accepted == completed <= 1
