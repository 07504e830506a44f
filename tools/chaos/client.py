"""An HTTP client that behaves like a patient, well-written API client.

It retries what may succeed later (connection errors and timeouts, 5xx, 429) with exponential
backoff and full jitter, honouring `Retry-After`, and keeps retrying for as long as the API may
plausibly be down (a killed API is restarted by the supervisor). The caller makes retries safe:
a checkout's `Idempotency-Key` is the same on every attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from kit.logging import get_logger

log = get_logger(__name__)

RETRYABLE = frozenset({429, 500, 502, 503, 504})
# Backoff between attempts: 0.2 s doubling up to 5 s, each drawn uniformly below it (full jitter).
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
# A request that has not been answered for this long is given up (and reported): longer than any
# fault of a run plus the supervisor's slowest restart.
GIVE_UP_AFTER_S = 300.0
# One attempt's timeout; a paused (SIGSTOP) service answers nothing at all.
ATTEMPT_TIMEOUT_S = 10.0


class GaveUp(Exception):
    """A request kept failing for GIVE_UP_AFTER_S."""


@dataclass
class Answer:
    """The final answer to a request, and whether an earlier attempt may have been applied."""

    response: httpx.Response
    # An attempt before this one got no answer or a 5xx: the server may have acted on it.
    ambiguous: bool
    attempts: int


@dataclass
class RequestLog:
    """Latency of every answered attempt, with when it was sent (seconds since `origin`)."""

    origin: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    retries: int = 0
    gave_up: int = 0

    def now(self) -> float:
        """Seconds since the origin of this run."""
        return time.monotonic() - self.origin


def backoff_s(attempt: int, rng: random.Random) -> float:
    """The pause before attempt `attempt + 1` (full jitter)."""
    return rng.uniform(0, min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**attempt))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class PatientClient:
    """Sends a request until it gets an answer that retrying cannot change."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        requests: RequestLog,
        *,
        rng: random.Random | None = None,
        give_up_after_s: float = GIVE_UP_AFTER_S,
    ) -> None:
        self.http = http
        self.requests = requests
        self.rng = rng or random.Random()
        self.give_up_after_s = give_up_after_s

    async def send(self, method: str, url: str, **kwargs: Any) -> Answer:
        """The first answer that is not 429/5xx (GaveUp after `give_up_after_s`)."""
        started = time.monotonic()
        ambiguous = False
        attempt = 0
        while True:
            sent, clock = self.requests.now(), time.monotonic()
            wait: float | None = None
            try:
                response = await self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                # Refused or not connected in time: the request never reached the server.
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                ambiguous = ambiguous or not unsent
                reason = f"{type(exc).__name__}"
            else:
                self.requests.samples.append((sent, (time.monotonic() - clock) * 1000))
                if response.status_code not in RETRYABLE:
                    return Answer(response, ambiguous, attempt + 1)
                ambiguous = ambiguous or response.status_code != 429
                reason, wait = str(response.status_code), _retry_after(response)
            if time.monotonic() - started > self.give_up_after_s:
                self.requests.gave_up += 1
                raise GaveUp(f"{method} {url}: still {reason} after {attempt + 1} attempts")
            self.requests.retries += 1
            log.debug("chaos.client.retry", method=method, url=url, reason=reason)
            await asyncio.sleep(wait if wait is not None else backoff_s(attempt, self.rng))
            attempt += 1
