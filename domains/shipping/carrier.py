"""Client of the carrier's booking API (the sandbox carrier in development and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from domains.shipping.errors import CarrierRejected, CarrierUnavailable


@dataclass(frozen=True)
class Booking:
    """A shipment as the carrier booked it."""

    id: str
    carrier: str
    tracking_number: str
    label_url: str | None
    status: str


class CarrierClient:
    """Async HTTP client of one carrier."""

    def __init__(self, base_url: str, *, timeout_s: float, client: httpx.AsyncClient | None = None):
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _post(self, path: str, payload: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=payload, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            raise CarrierUnavailable(f"POST {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in (409, 429):
            raise CarrierUnavailable(f"POST {path}: HTTP {response.status_code}")
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            error = body.get("error") or {}
            raise CarrierRejected(str(error.get("message") or "the carrier refused the request"))
        return body

    async def book(self, *, reference: str, ship_to: dict[str, Any], key: str) -> Booking:
        """Book a shipment (idempotent under `key`)."""
        body = await self._post(
            "/v1/carrier/shipments", {"reference": reference, "ship_to": ship_to}, key
        )
        return Booking(
            id=body["id"],
            carrier=body["carrier"],
            tracking_number=body["tracking_number"],
            label_url=body.get("label_url"),
            status=body["status"],
        )

    async def cancel(self, booking_id: str, *, key: str) -> None:
        """Cancel a booked shipment (idempotent)."""
        await self._post(f"/v1/carrier/shipments/{booking_id}/cancel", {}, key)
