"""EasyPost's webhook signature: `X-Hmac-Signature: hmac-sha256-hex=<hex>`.

The HMAC-SHA256 of the raw body under the webhook secret, the secret first normalized to Unicode
NFKD and encoded as UTF-8: exactly what the `easypost` package's `validate_webhook` recomputes.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

HEADER = "X-Hmac-Signature"
PREFIX = "hmac-sha256-hex="


def signature(secret: str, body: bytes) -> str:
    """The header's value for `body` under `secret`."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def easypost_headers(secret: str, body: bytes) -> dict[str, str]:
    """The headers of one delivery of `body`."""
    return {HEADER: signature(secret, body), "Content-Type": "application/json"}
