"""Logs go through the real processor chain; personal data and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from kit.logging import configure_logging, get_logger
from kit.settings import Settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(log={"format": "json"}))
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    monkeypatch.setattr(handler, "stream", stream)
    return stream


def test_personal_data_is_redacted_through_the_real_chain(captured: io.StringIO) -> None:
    log = get_logger("tests.logging")
    log.info(
        "checkout.started",
        checkout_id="c-1",
        email="ada@example.com",
        phone="+44 20 7946 0000",
        shipping_address={"name": "Ada Lovelace", "line1": "12 St James's Square", "country": "GB"},
        payment_token="tok_live_secret_123",
        note="reply to grace@example.org please",
    )
    logging.getLogger("uvicorn.error").warning(
        "Authorization: Bearer eyJhbGciOi.secret.sig from bob@example.net"
    )

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    output = captured.getvalue()
    for secret in (
        "ada@example.com",
        "+44 20 7946",
        "Ada Lovelace",
        "St James",
        "tok_live_secret_123",
        "grace@example.org",
        "eyJhbGciOi",
        "bob@example.net",
    ):
        assert secret not in output
    first = lines[0]
    assert first["event"] == "checkout.started"
    assert first["checkout_id"] == "c-1"  # what operators need stays
    assert first["email"] == "[redacted]"
    assert first["shipping_address"] == "[redacted]"
    assert "[redacted]" in lines[1]["event"]


def test_tokens_are_redacted_whatever_the_case_of_bearer(captured: io.StringIO) -> None:
    log = get_logger("tests.logging")
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        log.warning("api.header", header=f"{scheme} eyJ.secret-{scheme}.sig", plain="no token")
    output = captured.getvalue()
    assert "secret" not in output
    assert output.count("Bearer [redacted]") == 4
    assert json.loads(output.splitlines()[0])["plain"] == "no token"


def test_context_is_carried(captured: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(
        checkout_id="c-2", activity="cart.lock", attempt=2
    ):
        get_logger("tests.logging").info("cart.locked")
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert (line["checkout_id"], line["activity"], line["attempt"]) == ("c-2", "cart.lock", 2)
