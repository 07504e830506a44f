"""The API's own Prometheus metrics (the process registry, served at /metrics).

Requests are counted by route template (`/v1/checkouts/{checkout_id}`, never the raw path, so the
series stay few): a request no route matched is `route="unmatched"`. Prometheus's own scrapes of
/metrics are not counted.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHECKOUT_STARTS = Counter("checkout_starts", "POST /v1/checkouts answers", ["outcome"])
WEBHOOK_VERIFICATIONS = Counter(
    "webhook_verifications", "incoming webhooks by signature outcome", ["source", "outcome"]
)
# Verified Stripe events whose `api_version` is not the one the platform's `stripe` package is
# pinned to (their shape may differ): by the event's version.
STRIPE_API_VERSION_MISMATCHES = Counter(
    "stripe_event_api_version_mismatches",
    "verified Stripe events of another API version than the pinned SDK's",
    ["api_version"],
)
# Bearer tokens checked: `accepted`, `rejected` (401), `unavailable` (503: the identity
# provider's keys could not be fetched).
TOKEN_VERIFICATIONS = Counter("token_verifications", "bearer tokens by outcome", ["outcome"])
API_REQUESTS = Counter(
    "api_requests", "HTTP requests answered, by route and status", ["method", "route", "status"]
)
API_REQUEST_SECONDS = Histogram(
    "api_request_duration_seconds",
    "time to answer an HTTP request, by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def route_of(scope: Scope) -> str:
    """The template of the route that took the request ("unmatched" when none did)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


# Where the metrics are served (api/app.py mounts them).
METRICS_PATH = "/metrics"


class RequestMetrics:
    """Counts and times every HTTP request (an exception counts as a 500), scrapes aside."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == METRICS_PATH or path.startswith(METRICS_PATH + "/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route, method = route_of(scope), scope["method"]
            API_REQUESTS.labels(method, route, str(status)).inc()
            API_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
