"""Activity log lines carry checkout_id, workflow_id, activity and attempt."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kit.logging import configure_logging
from tests.platform import Platform


async def test_activity_logs_carry_their_checkout(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    configure_logging(platform.settings.updated(log={"format": "json"}))
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    monkeypatch.setattr(handler, "stream", stream)

    checkout, handle = await platform.checkout(token="tok_capture_fails")
    await handle.result()

    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    declined = [line for line in lines if line.get("event") == "payments.capture.declined"]
    assert declined, "the capture activity logs its decline"
    assert declined[0]["checkout_id"] == str(checkout.checkout_id)
    assert declined[0]["workflow_id"] == f"checkout-{checkout.checkout_id}"
    assert declined[0]["activity"] == "payments.capture"
    assert declined[0]["attempt"] == 1
