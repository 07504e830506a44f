"""The API's own Prometheus metrics (the process registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

CHECKOUT_STARTS = Counter("checkout_starts", "POST /v1/checkouts answers", ["outcome"])
WEBHOOK_VERIFICATIONS = Counter(
    "webhook_verifications", "incoming webhooks by signature outcome", ["source", "outcome"]
)
# Bearer tokens checked: `accepted`, `rejected` (401), `unavailable` (503: the identity
# provider's keys could not be fetched).
TOKEN_VERIFICATIONS = Counter("token_verifications", "bearer tokens by outcome", ["outcome"])
