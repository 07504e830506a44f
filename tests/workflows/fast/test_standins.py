"""The stand-ins cover every activity the contracts name, on the queue the workflow calls it on;
a domain activity nobody stood in for stops the tier at once."""

from __future__ import annotations

import pytest

from tests.workflows.fast import standins
from tests.workflows.fast.standins import BEHAVIOURS, Standins, contract_activities, queue_of
from workflows.checkout.contract import TaskQueue
from workflows.checkout.steps import STEPS


def test_every_activity_the_checkout_calls_has_a_stand_in_on_its_queue() -> None:
    found = contract_activities()

    assert set(STEPS) <= set(found)
    assert set(STEPS) <= set(BEHAVIOURS)
    assert all(queue_of(name) == STEPS[name].queue.value for name in STEPS)
    registry = Standins()
    assert registry.placement() == {name: queue_of(name) for name in found}
    assert set(registry.by_queue()) == {queue.value for queue in TaskQueue}
    assert [len(a) for a in registry.by_queue().values()] == [
        1 + sum(1 for q in registry.placement().values() if q == queue) for queue in TaskQueue
    ]


def test_a_domain_activity_without_a_stand_in_stops_the_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(standins.BEHAVIOURS, "shipping.cancel")

    with pytest.raises(LookupError, match=r"no stand-in for shipping\.cancel"):
        Standins()


def test_the_checkouts_own_records_need_no_behaviour() -> None:
    records = [name for name in contract_activities() if queue_of(name) == TaskQueue.CHECKOUT]

    assert records  # open_session, record_progress: accepted whatever they carry
    assert not set(records) & set(BEHAVIOURS)
