"""Stripe's idempotency keys, and the tok_flaky misbehaviour that tests them.

The key's record (endpoint, body hash, answer) is written in the same SQLite transaction as the
effect, so "the effect happened" and "a retry will replay it" are one fact. Only answers from an
executed operation are stored; validation and state errors raised before any effect are not, so a
retry after the state changed gets a fresh answer.

Like Stripe, the sandbox forgets a key after a while (SANDBOX_IDEMPOTENCY_TTL_S, 24 hours as at
Stripe): a request under a key older than that runs again as a new one, and a create makes a
second object. A client retrying days later must not count on its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from kit.logging import get_logger
from sandbox.psp.errors import ApiError, invalid_value
from sandbox.psp.models import Outcome
from sandbox.psp.store import Store

log = get_logger(__name__)

MAX_KEY_LENGTH = 255
# How long Stripe keeps an idempotency key: "at least 24 hours".
DEFAULT_TTL_S = 24 * 3600.0


def canonical_hash(body: Any) -> str:
    """sha256 of the body as canonical JSON: key order and whitespace do not matter."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def json_response(
    status: int, body: str | dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer from a body that may already be serialized (replays send stored bytes)."""
    content = body if isinstance(body, str) else json.dumps(body)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def key_in_use() -> ApiError:
    """A second request under a key whose first request is still executing.

    409 `idempotency_error` (code `idempotency_key_in_use`), as Stripe answers it, with
    `Stripe-Should-Retry: true`. Why 409 and not 400: stripe-python turns a 400 `idempotency_error`
    into IdempotencyError, which means "this key was misused", a bug nobody should retry; here
    the key is used correctly and the answer will simply be ready later. Its
    `specific_v1_api_error` maps any 409 to `stripe.APIError` (never CardError or
    IdempotencyError, whatever the `type`), and its HTTP client retries a 409 (and honours
    Stripe-Should-Retry) when `max_network_retries` allows: the SDK surfaces it as the transient
    error it is, and the retry gets the stored answer once the first request has finished.
    """
    return ApiError(
        409,
        "idempotency_error",
        "idempotency_key_in_use",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through). "
        "Please try again later.",
        headers={"Stripe-Should-Retry": "true"},
    )


@dataclass(frozen=True)
class _Answer:
    status: int
    body: str
    replayed: bool
    flaky_call: int | None


def _bump(conn: sqlite3.Connection, scope: str) -> int:
    row = conn.execute(
        "INSERT INTO flaky_calls (scope, calls) VALUES (?, 1)"
        " ON CONFLICT (scope) DO UPDATE SET calls = calls + 1 RETURNING calls",
        (scope,),
    ).fetchone()
    return int(row["calls"])


class Idempotency:
    """Runs POST operations under their Idempotency-Key."""

    def __init__(
        self,
        store: Store,
        *,
        flaky_hang_s: float,
        on_commit: Callable[[], None],
        ttl_s: float = DEFAULT_TTL_S,
    ):
        self._store = store
        self._ttl_s = ttl_s
        self._flaky_hang_s = flaky_hang_s
        self._on_commit = on_commit
        # Keys whose first request is executing now. In memory on purpose: after a restart
        # nothing is executing, and the transaction either committed its record or left no trace.
        self._executing: set[str] = set()

    async def execute(
        self,
        *,
        key: str | None,
        endpoint: str,
        request_hash: str,
        operation: Callable[[sqlite3.Connection], Outcome],
        flaky_scope: str | None = None,
    ) -> Response:
        """Replay the stored answer of `key`, or run `operation` and store its answer with it.

        `flaky_scope` names the per-intent call counter of a tok_flaky intent: its first two
        successful calls commit and then answer 500, or answer only after a long hang.
        """
        if key is not None:
            if not 0 < len(key) <= MAX_KEY_LENGTH:
                raise invalid_value(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
            if key in self._executing:
                raise key_in_use()
            self._executing.add(key)
        try:
            answer = await self._store.transaction(
                lambda conn: self._run(conn, key, endpoint, request_hash, operation, flaky_scope)
            )
        finally:
            if key is not None:
                self._executing.discard(key)
        if not answer.replayed:
            self._on_commit()
        return await self._answer(answer, endpoint=endpoint)

    def _run(
        self,
        conn: sqlite3.Connection,
        key: str | None,
        endpoint: str,
        request_hash: str,
        operation: Callable[[sqlite3.Connection], Outcome],
        flaky_scope: str | None,
    ) -> _Answer:
        if key is not None:
            row = self._live_key(conn, key)
            if row is not None:
                if row["endpoint"] != endpoint or row["request_hash"] != request_hash:
                    raise ApiError(
                        400,
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with (first: {row['endpoint']}). Try using a key "
                        f"other than '{key}' if you meant to execute a different request.",
                    )
                status = int(row["status_code"])
                flaky = _bump(conn, flaky_scope) if flaky_scope and status < 300 else None
                return _Answer(status, str(row["response_body"]), True, flaky)
        outcome = operation(conn)
        body = json.dumps(outcome.body)
        if key is not None:
            conn.execute(
                "INSERT INTO idempotency_keys"
                " (key, endpoint, request_hash, status_code, response_body, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, endpoint, request_hash, outcome.status, body, time.time()),
            )
        flaky = _bump(conn, flaky_scope) if flaky_scope and outcome.status < 300 else None
        return _Answer(outcome.status, body, False, flaky)

    def _live_key(self, conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
        """The record of `key`, unless it has expired (then it is forgotten, as at Stripe)."""
        row: sqlite3.Row | None = conn.execute(
            "SELECT endpoint, request_hash, status_code, response_body, created"
            " FROM idempotency_keys WHERE key = ?",
            (key,),
        ).fetchone()
        if row is not None and time.time() - float(row["created"]) > self._ttl_s:
            conn.execute("DELETE FROM idempotency_keys WHERE key = ?", (key,))
            log.info("sandbox.idempotency.expired", key=key, ttl_s=self._ttl_s)
            return None
        return row

    async def _answer(self, answer: _Answer, *, endpoint: str) -> Response:
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        if answer.flaky_call == 1:
            log.info("sandbox.flaky.error", endpoint=endpoint)
            return json_response(
                500,
                {
                    "error": {
                        "type": "api_error",
                        "message": "An error occurred with our connection to the card network "
                        "(tok_flaky: the request was processed).",
                    }
                },
            )
        if answer.flaky_call == 2:
            log.info("sandbox.flaky.hang", endpoint=endpoint, seconds=self._flaky_hang_s)
            await asyncio.sleep(self._flaky_hang_s)
        return json_response(answer.status, answer.body, headers)
