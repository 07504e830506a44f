"""Client of the Stripe-shaped payment provider (the sandbox in development and tests).

Integers of minor units exist only here, at the boundary. Every POST carries an idempotency key
derived from the checkout, so a retry after a timeout or a 5xx can never charge twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from domains.payments.errors import ProviderUnavailable


@dataclass(frozen=True)
class Intent:
    """The provider's view of a payment intent."""

    id: str
    status: str
    amount: int
    currency: str
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    next_action: dict[str, Any] | None
    last_error_code: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Intent:
        """Parse the provider's intent object."""
        last_error = body.get("last_error") or None
        return cls(
            id=body["id"],
            status=body["status"],
            amount=int(body["amount"]),
            currency=str(body["currency"]).upper(),
            amount_capturable=int(body.get("amount_capturable") or 0),
            amount_received=int(body.get("amount_received") or 0),
            amount_refunded=int(body.get("amount_refunded") or 0),
            next_action=body.get("next_action") or None,
            last_error_code=last_error.get("code") if last_error else None,
            metadata=dict(body.get("metadata") or {}),
        )


class ProviderRejected(Exception):
    """A definite 4xx answer: the request was understood and refused."""

    def __init__(self, status: int, code: str, message: str, intent: Intent | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.intent = intent


class PaymentProvider:
    """Async HTTP client of one provider; owns no state besides its connection pool."""

    def __init__(self, base_url: str, *, timeout_s: float, client: httpx.AsyncClient | None = None):
        self._client = client or httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, json: dict[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = await self._client.request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:  # timeouts and connection failures
            raise ProviderUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        # 409: the same key is still executing on the provider's side; 429 and 5xx: try later.
        if response.status_code >= 500 or response.status_code in (409, 429):
            raise ProviderUnavailable(f"{method} {path}: HTTP {response.status_code}")
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            error = body.get("error")
            if error is None and body.get("object") == "payment_intent":
                # A declined authorization answers 402 with the failed intent itself.
                return body
            error = error or {}
            intent = error.get("payment_intent")
            raise ProviderRejected(
                response.status_code,
                str(error.get("code") or "unknown"),
                str(error.get("message") or ""),
                Intent.from_json(intent) if intent else None,
            )
        return body

    async def create_intent(
        self, *, amount: int, currency: str, token: str, metadata: dict[str, str], key: str
    ) -> Intent:
        """Authorize `amount` minor units (manual capture)."""
        body = await self._call(
            "POST",
            "/v1/payment_intents",
            json={
                "amount": amount,
                "currency": currency.lower(),
                "token": token,
                "capture_method": "manual",
                "metadata": metadata,
            },
            key=key,
        )
        return Intent.from_json(body)

    async def get_intent(self, intent_id: str) -> Intent:
        """Re-read an intent (never trust a webhook's copy)."""
        return Intent.from_json(await self._call("GET", f"/v1/payment_intents/{intent_id}"))

    async def capture(self, intent_id: str, *, key: str) -> Intent:
        """Capture the authorized amount."""
        body = await self._call(
            "POST", f"/v1/payment_intents/{intent_id}/capture", json={}, key=key
        )
        return Intent.from_json(body)

    async def cancel(self, intent_id: str, *, key: str) -> Intent:
        """Release an authorization (or an intent still waiting for action)."""
        body = await self._call("POST", f"/v1/payment_intents/{intent_id}/cancel", json={}, key=key)
        return Intent.from_json(body)

    async def refund(self, intent_id: str, *, amount: int | None, key: str) -> dict[str, Any]:
        """Refund captured money; `amount=None` refunds what is left."""
        payload: dict[str, Any] = {"payment_intent": intent_id}
        if amount is not None:
            payload["amount"] = amount
        return await self._call("POST", "/v1/refunds", json=payload, key=key)
