"""The carrier, EasyPost, through its official `easypost` package (the sandbox in development).

The package is synchronous (`requests`): every call runs on a worker thread
(`asyncio.to_thread`), so an activity waiting on the carrier never blocks the event loop. What
the platform reads of EasyPost's objects is copied into plain frozen values here; nothing else
sees the package's types. Amounts are decimal strings on the wire and Money here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, TypeVar

from easypost.easypost_client import EasyPostClient
from easypost.errors.api.api_error import ApiError
from easypost.errors.general.easypost_error import EasyPostError

from domains.shipping.errors import AddressUnserviceable, CarrierRejected, CarrierUnavailable
from kit.logging import get_logger
from kit.money import Money

log = get_logger(__name__)
T = TypeVar("T")

GRAMS_PER_OUNCE = Decimal("28.349523125")
CM_PER_INCH = Decimal("2.54")
TENTH = Decimal("0.1")
# Refund states in which the label is void (or being voided): the parcel will never travel.
VOIDED = frozenset({"submitted", "refunded"})
# HTTP statuses that say "try again": the same request may succeed later.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Parcel:
    """A parcel in the platform's units: grams and centimetres."""

    weight_g: int
    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal

    @classmethod
    def of_millimetres(cls, weight_g: int, length: int, width: int, height: int) -> Parcel:
        """From grams and millimetres (how the catalog keeps a unit's size)."""
        return cls(weight_g, *(Decimal(mm) / 10 for mm in (length, width, height)))

    @classmethod
    def stacked(cls, units: list[tuple[Parcel, int]]) -> Parcel:
        """One box for several units: their weights added, stacked on the largest footprint."""
        if not units:
            raise ValueError("a parcel holds at least one unit")
        return cls(
            weight_g=sum(p.weight_g * n for p, n in units),
            length_cm=max(p.length_cm for p, _ in units),
            width_cm=max(p.width_cm for p, _ in units),
            height_cm=sum((p.height_cm * n for p, n in units), Decimal(0)),
        )

    def document(self) -> dict[str, Any]:
        """As stored beside a quote (JSON: decimals as positional strings)."""
        return {
            "weight_g": self.weight_g,
            "length_cm": f"{self.length_cm:f}",
            "width_cm": f"{self.width_cm:f}",
            "height_cm": f"{self.height_cm:f}",
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Parcel:
        """From what `document` stored."""
        return cls(
            weight_g=int(document["weight_g"]),
            length_cm=Decimal(str(document["length_cm"])),
            width_cm=Decimal(str(document["width_cm"])),
            height_cm=Decimal(str(document["height_cm"])),
        )

    def wire(self) -> dict[str, float]:
        """EasyPost's parcel: ounces and inches, a tenth up (never under-declared)."""

        def up(value: Decimal) -> float:
            return float(value.quantize(TENTH, rounding=ROUND_CEILING))

        return {
            "weight": up(Decimal(self.weight_g) / GRAMS_PER_OUNCE),
            "length": up(self.length_cm / CM_PER_INCH),
            "width": up(self.width_cm / CM_PER_INCH),
            "height": up(self.height_cm / CM_PER_INCH),
        }


@dataclass(frozen=True)
class CarrierRate:
    """One service's price for a shipment."""

    id: str
    carrier: str
    service: str
    amount: Money
    delivery_days: int | None


@dataclass(frozen=True)
class CarrierShipment:
    """A shipment as the carrier knows it: its rates, and once bought its label and tracker."""

    id: str
    rates: tuple[CarrierRate, ...]
    selected_rate: CarrierRate | None
    tracking_code: str | None
    label_url: str | None
    refund_status: str | None
    is_return: bool
    messages: tuple[str, ...]

    @property
    def bought(self) -> bool:
        """A label was bought (whatever happened to it since)."""
        return self.selected_rate is not None and self.tracking_code is not None

    @property
    def voided(self) -> bool:
        """Its label is void or being voided."""
        return self.refund_status in VOIDED

    def cheapest(self) -> CarrierRate:
        """The lowest rate; AddressUnserviceable when the carrier offers none."""
        if not self.rates:
            raise AddressUnserviceable(
                "the carrier serves no service to this address",
                carrier_shipment_id=self.id,
                messages=list(self.messages),
            )
        return min(self.rates, key=lambda r: (r.amount.amount, r.delivery_days or 0, r.id))

    def rate_like(self, carrier: str, service: str) -> CarrierRate | None:
        """This shipment's rate of `carrier`'s `service`, if it offers one."""
        return next((r for r in self.rates if (r.carrier, r.service) == (carrier, service)), None)


def _rate(document: dict[str, Any]) -> CarrierRate:
    days = document.get("delivery_days")
    return CarrierRate(
        id=str(document["id"]),
        carrier=str(document["carrier"]),
        service=str(document["service"]),
        amount=Money.of(str(document["rate"]), str(document["currency"])),
        delivery_days=int(days) if days is not None else None,
    )


def parse_shipment(document: dict[str, Any]) -> CarrierShipment:
    """The platform's view of an EasyPost Shipment object."""
    label = document.get("postage_label") or {}
    selected = document.get("selected_rate")
    return CarrierShipment(
        id=str(document["id"]),
        rates=tuple(_rate(r) for r in document.get("rates") or ()),
        selected_rate=_rate(selected) if selected else None,
        tracking_code=document.get("tracking_code"),
        label_url=label.get("label_pdf_url") or label.get("label_url"),
        refund_status=document.get("refund_status"),
        is_return=bool(document.get("is_return")),
        messages=tuple(str(m.get("message", "")) for m in document.get("messages") or ()),
    )


def _classified(error: EasyPostError, what: str) -> Exception:
    """A transient failure (no answer, 5xx, 408/409/429) or a definite refusal (other 4xx)."""
    status = error.http_status if isinstance(error, ApiError) else None
    if status is None or status >= 500 or status in TRANSIENT_STATUSES:
        return CarrierUnavailable(f"{what}: {type(error).__name__} {status or ''}".strip())
    code = getattr(error, "code", None)
    return CarrierRejected(
        f"the carrier refused {what}: {error}", carrier_code=code, http_status=status
    )


class EasyPostCarrier:
    """EasyPost's shipments API, called off the event loop."""

    name = "easypost"

    def __init__(self, api_key: str, *, api_base: str, timeout_s: int) -> None:
        self._client = EasyPostClient(api_key, api_base=api_base, timeout=timeout_s)

    async def _call(self, what: str, fn: Callable[[], Any]) -> CarrierShipment:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = fn().to_dict()
            return result

        try:
            document = await asyncio.to_thread(run)
        except EasyPostError as exc:
            raise _classified(exc, what) from exc
        return parse_shipment(document)

    async def create(
        self,
        *,
        to_address: dict[str, Any],
        from_address: dict[str, Any],
        parcel: Parcel,
        reference: str,
        is_return: bool = False,
    ) -> CarrierShipment:
        """A new shipment with its rates (none when the address cannot be served)."""
        create = functools.partial(
            self._client.shipment.create,
            to_address=to_address,
            from_address=from_address,
            parcel=parcel.wire(),
            reference=reference,
            is_return=is_return,
        )
        return await self._call("creating a shipment", create)

    async def retrieve(self, shipment_id: str) -> CarrierShipment:
        """The shipment as the carrier has it now."""
        return await self._call(
            "reading a shipment", functools.partial(self._client.shipment.retrieve, shipment_id)
        )

    async def buy(self, shipment_id: str, rate_id: str) -> CarrierShipment:
        """Buy the rate: a label and a tracker. A shipment already bought (a retry whose first
        answer was lost) is read again rather than bought twice."""
        buy = functools.partial(self._client.shipment.buy, shipment_id, rate={"id": rate_id})
        try:
            return await self._call("buying a label", buy)
        except CarrierRejected:
            current = await self.retrieve(shipment_id)
            if current.bought:
                log.info("shipping.carrier.already_bought", carrier_shipment_id=shipment_id)
                return current
            raise

    async def refund(self, shipment_id: str) -> CarrierShipment:
        """Void the label; a label already voided is not refunded again."""
        current = await self.retrieve(shipment_id)
        if current.voided or not current.bought:
            return current
        refund = functools.partial(self._client.shipment.refund, shipment_id)
        return await self._call("voiding a label", refund)
