"""Delivery of recorded webhook events: signed, concurrent, retried.

Events are rows written with the state change that caused them; this loop only sends them. An
event is marked delivered after a 2xx, so a crash between the POST and the mark sends it again:
delivery is at least once, in no guaranteed order, and receivers deduplicate on the event id.
Each row names its target; one loop per target sends with that target's signer: the payment
provider's events as Stripe signs them (`Stripe-Signature`, signing.py), the carrier's as
EasyPost signs them (`X-Hmac-Signature`, sandbox/easypost/signing.py).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from kit.logging import get_logger
from sandbox.psp.store import Store

log = get_logger(__name__)

TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 30.0
CONCURRENCY = 16

Target = Literal["payments", "carrier"]
PAYMENTS_TARGET: Target = "payments"
CARRIER_TARGET: Target = "carrier"

# The headers of one attempt at sending an event (its id and raw body), signature included.
Signer = Callable[[str, bytes], dict[str, str]]


def backoff_s(attempts: int) -> float:
    """Wait before the next attempt after `attempts` failures: doubling, capped, jittered."""
    ceiling = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempts - 1))
    # "Equal jitter": at least half the ceiling, so retries of many events spread out without
    # ever collapsing to an immediate retry.
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


@dataclass(frozen=True)
class _Pending:
    id: str
    type: str
    next_attempt_at: float


def delivery_state(row: sqlite3.Row) -> dict[str, Any]:
    """How far the delivery of an `events` row has got, as the event listings show it."""
    return {
        "state": row["state"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "next_attempt_at": row["next_attempt_at"] if row["state"] == "pending" else None,
        "delivered_at": row["delivered_at"],
    }


def _pending(conn: sqlite3.Connection, target: Target) -> list[_Pending]:
    rows = conn.execute(
        "SELECT id, type, next_attempt_at FROM events WHERE state = 'pending' AND target = ?"
        " ORDER BY next_attempt_at",
        (target,),
    ).fetchall()
    return [_Pending(row["id"], row["type"], row["next_attempt_at"]) for row in rows]


def _body(conn: sqlite3.Connection, event_id: str) -> str:
    row = conn.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
    return str(row["body"])


def _record_attempt(
    conn: sqlite3.Connection, event_id: str, error: str | None, max_attempts: int
) -> tuple[str, int]:
    row = conn.execute("SELECT attempts FROM events WHERE id = ?", (event_id,)).fetchone()
    attempts = int(row["attempts"]) + 1
    now = time.time()
    if error is None:
        state = "delivered"
        conn.execute(
            "UPDATE events SET state = ?, attempts = ?, last_error = NULL, delivered_at = ?"
            " WHERE id = ?",
            (state, attempts, now, event_id),
        )
    else:
        state = "failed" if attempts >= max_attempts else "pending"
        conn.execute(
            "UPDATE events SET state = ?, attempts = ?, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (state, attempts, error, now + backoff_s(attempts), event_id),
        )
    return state, attempts


class WebhookDelivery:
    """The background loop that sends one target's pending events to its webhook endpoint."""

    def __init__(
        self, store: Store, *, target: Target, url: str, sign: Signer, max_attempts: int
    ) -> None:
        self._store = store
        self._target = target
        self._url = url
        self._sign = sign
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    def notify(self) -> None:
        """New events may be pending: look now instead of at the next scheduled retry."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; in-flight attempts are abandoned and retried after restart."""
        log.info(
            "sandbox.webhooks.started",
            target=self._target,
            url=self._url,
            max_attempts=self._max_attempts,
        )
        # trust_env=False: a proxy configured for the outside world must not intercept a POST
        # to the platform on this machine.
        async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
            try:
                while True:
                    self._wake.clear()
                    wait_s = await self._dispatch_due(client)
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
                    except TimeoutError:
                        pass
            finally:
                tasks = list(self._in_flight.values())
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                log.info("sandbox.webhooks.stopped", target=self._target, abandoned=len(tasks))

    async def _dispatch_due(self, client: httpx.AsyncClient) -> float | None:
        """Start an attempt for every due event; seconds until the next one is due."""
        now = time.time()
        next_at: float | None = None
        for event in await self._store.read(lambda conn: _pending(conn, self._target)):
            if event.id in self._in_flight:
                continue
            if event.next_attempt_at <= now:
                task = asyncio.create_task(self._attempt(client, event))
                self._in_flight[event.id] = task
            elif next_at is None or event.next_attempt_at < next_at:
                next_at = event.next_attempt_at
        return None if next_at is None else max(0.0, next_at - now)

    async def _attempt(self, client: httpx.AsyncClient, event: _Pending) -> None:
        try:
            async with self._slots:
                body = (await self._store.read(lambda conn: _body(conn, event.id))).encode()
                # Signed at each attempt: the timestamp must be fresh for the receiver's
                # +/- 300 s window, however late the retry.
                headers = {**self._sign(event.id, body), "content-type": "application/json"}
                error: str | None
                try:
                    response = await client.post(self._url, content=body, headers=headers)
                    error = None if response.is_success else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                state, attempts = await self._store.transaction(
                    lambda conn: _record_attempt(conn, event.id, error, self._max_attempts)
                )
            sent = log.bind(event_id=event.id, type=event.type)
            if state == "delivered":
                sent.info("sandbox.webhook.delivered", attempt=attempts)
            elif state == "failed":
                sent.error("sandbox.webhook.failed", attempts=attempts, error=error)
            else:
                sent.warning("sandbox.webhook.retry", attempt=attempts, error=error)
        except Exception:
            # Left pending and due: pause so that a broken store cannot turn into a busy loop.
            log.exception("sandbox.webhook.error", event_id=event.id)
            await asyncio.sleep(1.0)
        finally:
            self._in_flight.pop(event.id, None)
            # The loop may be sleeping until a later event; this one's retry time is new.
            self.notify()
