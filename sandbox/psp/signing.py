"""Stripe's webhook signature, as Stripe computes it and `stripe.WebhookSignature` checks it.

`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The key is the
whole `whsec_...` string as UTF-8 bytes (unlike Standard Webhooks, nothing is base64-decoded).
During a rotation Stripe signs with both secrets, one `v1=` each; a receiver accepts the request
when any of them matches a secret it knows.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "Stripe-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex `v1` signature of one body at one time."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_signature(secrets: Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` value: `t=...` then one `v1=...` per secret, in the order given."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={signature(secret, t, body)}" for secret in secrets)])


def stripe_headers(secrets: Sequence[str], body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt, signed now (fresh for the receiver's tolerance)."""
    return {HEADER: stripe_signature(secrets, body)}
