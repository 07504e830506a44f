"""EasyPost's objects as its API answers them: Shipment, Rate, PostageLabel, Tracker, Event.

Field names and types, id prefixes (`shp_`, `rate_`, `pl_`, `trk_`, `evt_`, `adr_`, `prcl_`,
`ca_`, `user_`), the fields always sent and enum values are EasyPost's own: its client libraries'
published types and its recorded API answers (tests/sandbox/test_easypost_conformance.py validates
every answer and event against them). Amounts are decimal strings ("6.07"); weights and dimensions
are JSON numbers, as EasyPost sends them.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

MODE = "test"
CARRIER = "USPS"
CURRENCY = "USD"
CENT = Decimal("0.01")
OUNCES_PER_POUND = 16
# The sandbox's one carrier account and user, with EasyPost's id prefixes.
CARRIER_ACCOUNT_ID = "ca_" + "5a4d" * 8
USER_ID = "user_" + "5a4d" * 8
# USPS zones run from 1 (local) to 8 (farthest within the contiguous United States).
FARTHEST_ZONE = 8
# A postal code no service reaches: the shipment answers no rates (and a rate_error message), the
# way to test an order whose shipping fails for good after its payment was captured.
UNSERVICEABLE_ZIP = "00000"
# The tracker statuses a parcel goes through, in order (EasyPost has more: `unknown`,
# `return_to_sender`, `failure`, ...; the sandbox's parcels always arrive).
ROUTE = ("pre_transit", "in_transit", "out_for_delivery", "delivered")
NEXT_STATUS = dict(itertools.pairwise(ROUTE))


@dataclass(frozen=True)
class Service:
    """A row of the sandbox's rate table: base price, price per started pound, transit time, and
    the heaviest parcel the service takes (None: any the sandbox is sent)."""

    name: str
    base: Decimal
    per_pound: Decimal
    delivery_days: int
    max_weight_oz: Decimal | None = None


# The sandbox's rate tables (amounts in USD, as EasyPost quotes a US USPS account whatever the
# destination). Within the United States (its territories included, as USPS serves them):
DOMESTIC = (
    Service("GroundAdvantage", Decimal("5.50"), Decimal("0.60"), 5),
    Service("Priority", Decimal("7.90"), Decimal("0.90"), 2),
    Service("Express", Decimal("26.50"), Decimal("1.80"), 1),
)
# To or from any other country: USPS's international services, First-Class up to 4 lb.
INTERNATIONAL = (
    Service(
        "FirstClassPackageInternationalService",
        Decimal("15.75"),
        Decimal("2.50"),
        10,
        max_weight_oz=Decimal(64),
    ),
    Service("PriorityMailInternational", Decimal("45.50"), Decimal("4.00"), 8),
    Service("ExpressMailInternational", Decimal("62.00"), Decimal("5.00"), 4),
)
# Where USPS's domestic services go (EasyPost reads a missing country as US).
DOMESTIC_COUNTRIES = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})


def country(fields: dict[str, Any]) -> str:
    """An address's country as EasyPost reads it: upper-cased, US when not given."""
    return str(fields.get("country") or "US").strip().upper()


def services(to_country: str, from_country: str, weight_oz: Decimal) -> tuple[Service, ...]:
    """The services that carry a parcel of `weight_oz` between the two countries: the domestic
    table when both ends are domestic, else the international one (either way round: a return
    from abroad is international too)."""
    domestic = {to_country, from_country} <= DOMESTIC_COUNTRIES
    table = DOMESTIC if domestic else INTERNATIONAL
    return tuple(s for s in table if s.max_weight_oz is None or weight_oz <= s.max_weight_oz)


def new_id(prefix: str) -> str:
    """An EasyPost-looking object id: `<prefix>_<32 hex>`."""
    return f"{prefix}_{secrets.token_hex(16)}"


def timestamp(at: float) -> str:
    """EasyPost's timestamps: ISO 8601 in UTC, to the second, with a `Z`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price(service: Service, weight_oz: Decimal) -> Decimal:
    """The table's price of a parcel: the base, and the per-pound price for every started pound."""
    pounds = max(Decimal(1), (weight_oz / OUNCES_PER_POUND).to_integral_value(ROUND_CEILING))
    return (service.base + service.per_pound * pounds).quantize(CENT, ROUND_HALF_UP)


def _number(value: Any) -> float | None:
    # EasyPost's weights and dimensions are JSON numbers (ounces and inches, not money).
    return None if value is None else float(value)


def usps_zone(to_zip: str, from_zip: str) -> int:
    """The parcel's USPS zone, a stand-in for USPS's table: 1 within one 3-digit ZIP area, else
    one more per leading digit apart (up to 8); 8 when either end has no US ZIP code."""
    if not (to_zip[:5].isdigit() and from_zip[:5].isdigit()):
        return FARTHEST_ZONE
    if to_zip[:3] == from_zip[:3]:
        return 1
    return min(FARTHEST_ZONE, 2 + abs(int(to_zip[0]) - int(from_zip[0])))


def message(text: str) -> dict[str, Any]:
    """A carrier's message on a shipment (`rate_error`: it has no rate for it)."""
    return {
        "carrier": CARRIER,
        "carrier_account_id": CARRIER_ACCOUNT_ID,
        "type": "rate_error",
        "message": text,
    }


def rate(service: Service, *, shipment_id: str, weight_oz: Decimal, at: float) -> dict[str, Any]:
    """A Rate of `service` for the shipment's parcel."""
    amount = str(price(service, weight_oz))
    return {
        "id": new_id("rate"),
        "object": "Rate",
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "mode": MODE,
        "service": service.name,
        "carrier": CARRIER,
        "rate": amount,
        "currency": CURRENCY,
        "retail_rate": amount,
        "retail_currency": CURRENCY,
        "list_rate": amount,
        "list_currency": CURRENCY,
        "billing_type": "easypost",
        "delivery_days": service.delivery_days,
        "delivery_date": None,
        "delivery_date_guaranteed": False,
        "est_delivery_days": service.delivery_days,
        "shipment_id": shipment_id,
        "carrier_account_id": CARRIER_ACCOUNT_ID,
    }


def address(fields: dict[str, Any], at: float) -> dict[str, Any]:
    """An Address object from the fields given (kept as given; the sandbox verifies nothing)."""
    keys = ("name", "company", "street1", "street2", "city", "state", "zip", "country")
    known = {key: fields.get(key) for key in keys}
    known.update({"phone": fields.get("phone"), "email": fields.get("email")})
    # Always sent by EasyPost, null unless given (the sandbox verifies and stores nothing).
    known.update({key: fields.get(key) for key in ("federal_tax_id", "state_tax_id")})
    return {
        "id": new_id("adr"),
        "object": "Address",
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "mode": MODE,
        **known,
        "residential": None,
        "carrier_facility": None,
        "verifications": {},
    }


def parcel(fields: dict[str, Any], at: float) -> dict[str, Any]:
    """A Parcel object: weight in ounces, dimensions in inches, as EasyPost counts them (JSON
    numbers; a dimension not given is null)."""
    return {
        "id": new_id("prcl"),
        "object": "Parcel",
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "length": _number(fields.get("length")),
        "width": _number(fields.get("width")),
        "height": _number(fields.get("height")),
        "predefined_package": None,
        "weight": _number(fields["weight"]),
        "mode": MODE,
    }


def postage_label(label_url: str, at: float) -> dict[str, Any]:
    """The PostageLabel of a bought shipment (a PDF the sandbox serves)."""
    return {
        "object": "PostageLabel",
        "id": new_id("pl"),
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "date_advance": 0,
        "integrated_form": "none",
        "label_date": timestamp(at),
        "label_resolution": 300,
        "label_size": "4x6",
        "label_type": "default",
        "label_file_type": "application/pdf",
        "label_url": label_url,
        "label_pdf_url": label_url,
        "label_zpl_url": None,
        "label_epl2_url": None,
        "label_file": None,
    }


def tracking_detail(status: str, at: float) -> dict[str, Any]:
    """One TrackingDetail: the status the parcel reached, and when."""
    return {
        "object": "TrackingDetail",
        "message": status.replace("_", " ").capitalize(),
        # Empty rather than null, as EasyPost answers them for USPS.
        "description": "",
        "status": status,
        "status_detail": "status_update",
        "datetime": timestamp(at),
        "source": CARRIER,
        "carrier_code": "",
        "tracking_location": {
            "object": "TrackingLocation",
            "city": None,
            "state": None,
            "country": None,
            "zip": None,
        },
    }


def tracker(
    *, shipment_id: str, tracking_code: str, public_url: str, at: float, is_return: bool = False
) -> dict[str, Any]:
    """The Tracker a bought label comes with, at `pre_transit`; `finalized` once nothing will
    move it any more (delivered, or its label voided)."""
    return {
        "id": new_id("trk"),
        "object": "Tracker",
        "mode": MODE,
        "tracking_code": tracking_code,
        "status": ROUTE[0],
        "status_detail": "label_created",
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "signed_by": None,
        "weight": None,
        "est_delivery_date": None,
        "shipment_id": shipment_id,
        "carrier": CARRIER,
        "tracking_details": [tracking_detail(ROUTE[0], at)],
        "fees": [],
        "carrier_detail": None,
        "public_url": public_url,
        "finalized": False,
        "is_return": is_return,
    }


def event(
    description: str, result: dict[str, Any], previous: dict[str, Any], at: float
) -> dict[str, Any]:
    """An Event as webhooks carry it (`tracker.updated` with the Tracker as `result`)."""
    return {
        "id": new_id("evt"),
        "object": "Event",
        "mode": MODE,
        "description": description,
        "previous_attributes": previous,
        "result": result,
        "status": "pending",
        "pending_urls": [],
        "completed_urls": [],
        "created_at": timestamp(at),
        "updated_at": timestamp(at),
        "user_id": USER_ID,
    }


def error(code: str, message: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """EasyPost's error body: `{"error": {"code", "message", "errors"}}`, `errors` naming the
    fields at fault (`{"field", "message"}`)."""
    return {"error": {"code": code, "message": message, "errors": errors or []}}
