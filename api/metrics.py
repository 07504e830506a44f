"""The API's own Prometheus metrics (the process registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

CHECKOUT_STARTS = Counter("checkout_starts", "POST /v1/checkouts answers", ["outcome"])
WEBHOOK_VERIFICATIONS = Counter(
    "webhook_verifications", "incoming webhooks by signature outcome", ["source", "outcome"]
)
