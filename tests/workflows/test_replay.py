"""Replay guards every workflow change: recorded histories must replay on today's code.

`tests/workflows/histories/*.json` are histories recorded from real runs (happy path with and
without a coupon, 3-D Secure, a decline, a cancel, a provider that fails and hangs); they stand
for checkouts in flight during a deploy. A change that makes one of them fail to replay needs a
patch (`workflow.patched`) or a new workflow type. RECORD_HISTORIES=1 adds this session's
histories as `<scenario>.<newest patch id>.json`, never overwriting a file: the histories of
every earlier path stay, and keep replaying.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from kit.codec import data_converter
from kit.settings import get_settings
from tests.platform import Platform
from workflows.checkout.workflow import LEAN_RECORDS, CheckoutWorkflow

HISTORIES = Path(__file__).parent / "histories"
# The newest patch: the histories this session records are named after it.
NEWEST_PATCH = LEAN_RECORDS
pytestmark = pytest.mark.timeout(120)


def _replayer() -> Replayer:
    return Replayer(
        workflows=[CheckoutWorkflow], data_converter=data_converter(get_settings().temporal)
    )


async def _scenarios(platform: Platform) -> dict[str, WorkflowHistory]:
    code = await platform.seed.coupon(percent="10")
    _, happy = await platform.checkout(coupon_code=code)
    await happy.result()
    _, plain = await platform.checkout()
    await plain.result()
    # The provider errors, then hangs past the client's timeout: steps slow enough to be shown.
    _, flaky = await platform.checkout(token="tok_flaky")
    await flaky.result()
    _, declined = await platform.checkout(token="tok_declined")
    await declined.result()
    _, threeds = await platform.checkout(token="tok_3ds")
    waiting = await platform.wait_status(threeds, "requires_action")
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    async with httpx.AsyncClient() as http:
        await http.get(waiting.payment.next_action.url)
    await threeds.result()
    _, cancelled = await platform.checkout(token="tok_3ds")
    await platform.wait_status(cancelled, "requires_action")
    await cancelled.signal(CheckoutWorkflow.cancel)
    await cancelled.result()
    return {
        "happy_coupon": await happy.fetch_history(),
        "happy": await plain.fetch_history(),
        "flaky": await flaky.fetch_history(),
        "declined": await declined.fetch_history(),
        "three_ds": await threeds.fetch_history(),
        "cancelled": await cancelled.fetch_history(),
    }


async def test_this_sessions_histories_replay(platform: Platform) -> None:
    scenarios = await _scenarios(platform)
    if os.environ.get("RECORD_HISTORIES") == "1":
        for name, history in scenarios.items():
            path = HISTORIES / f"{name}.{NEWEST_PATCH}.json"
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


def test_histories_were_recorded() -> None:
    assert len(list(HISTORIES.glob("*.json"))) >= 4, "record them with RECORD_HISTORIES=1"
    newest = list(HISTORIES.glob(f"*.{NEWEST_PATCH}.json"))
    assert len(newest) >= 4, f"record the {NEWEST_PATCH} path with RECORD_HISTORIES=1"
