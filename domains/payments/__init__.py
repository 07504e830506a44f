"""Payments against the provider: intents, captures, voids, refunds, idempotency keys."""
