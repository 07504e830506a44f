"""Shipping step of the checkout: buy the order's label (compensated by voiding it), and return
labels.

Buying is idempotent by checkout: the carrier's shipment and the rate to buy are recorded
(`label_purchases`) before the purchase, so a retry re-reads that shipment and buys nothing
twice (a buy whose answer was lost is found bought). The `easypost` package is synchronous; the
carrier client runs it on worker threads, never on the event loop.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio import activity

from activities.shared import Address
from activities.shipping.contract import (
    CANCEL,
    CREATE,
    RETURN_LABEL,
    WITHDRAW,
    CancelShipmentInput,
    CreateShipmentInput,
    ParcelValue,
    ReturnLabel,
    ReturnLabelInput,
    ShipmentInfo,
    WithdrawInput,
)
from domains.shipping import quotes, service
from domains.shipping.carrier import CarrierShipment, EasyPostCarrier, Parcel
from domains.shipping.errors import LabelNotVoidable, ParcelWithCarrier, ShipmentNotFound
from domains.shipping.models import LabelPurchase, ShippingQuote
from kit.db import DomainDatabase
from kit.logging import get_logger

log = get_logger(__name__)

# The parcel bought for when the checkout names none: the catalog's default unit.
DEFAULT_PARCEL = ParcelValue(weight_g=500, length_cm=30, width_cm=20, height_cm=10)


def _parcel(value: ParcelValue | None) -> Parcel:
    chosen = value or DEFAULT_PARCEL
    return Parcel(chosen.weight_g, chosen.length_cm, chosen.width_cm, chosen.height_cm)


def _outbound_key(checkout_id: uuid.UUID) -> str:
    return f"checkout:{checkout_id}"


class ShippingActivities:
    """Activities on the `shipping` task queue: the shipping database and the carrier."""

    def __init__(
        self, db: DomainDatabase, carrier: EasyPostCarrier, *, warehouse: dict[str, Any]
    ) -> None:
        self.db = db
        self.carrier = carrier
        self.warehouse = warehouse

    async def _fresh(
        self, address: Address, parcel: Parcel, reference: str, *, is_return: bool = False
    ) -> CarrierShipment:
        """A new carrier shipment for the address (AddressUnserviceable if it has no rates)."""
        buyer = quotes.carrier_address(address.model_dump(mode="json"))
        return await self.carrier.create(
            to_address=buyer,
            from_address=self.warehouse,
            parcel=parcel,
            reference=reference,
            is_return=is_return,
        )

    async def _plan(self, input: CreateShipmentInput) -> tuple[str, str]:
        """The carrier shipment and rate to buy: the chosen quote's while it is this address's
        and unclaimed, else a new shipment's rate of the same service, else its cheapest."""
        quote: ShippingQuote | None = None
        if input.shipping_rate_id is not None:
            async with self.db.begin() as session:
                quote = await quotes.get_quote(session, input.shipping_rate_id)
                claimed = quote is not None and (
                    await service.purchase_of(session, quote.carrier_shipment_id) is not None
                )
            ship_to = input.ship_to.model_dump(mode="json")
            if quote is not None and not claimed:
                if quote.address_fingerprint == quotes.address_fingerprint(ship_to):
                    return quote.carrier_shipment_id, quote.carrier_rate_id
        parcel = Parcel.from_document(quote.parcel) if quote else _parcel(input.parcel)
        fresh = await self._fresh(input.ship_to, parcel, str(input.order_id))
        same = fresh.rate_like(quote.carrier, quote.service) if quote else None
        return fresh.id, (same or fresh.cheapest()).id

    async def _record(
        self, key: str, kind: str, order_id: uuid.UUID, shipment_id: str, rate_id: str
    ) -> LabelPurchase:
        """Record what is about to be bought under `key` (the purchase recorded first wins)."""
        async with self.db.begin() as session:
            return await service.record_purchase(
                session,
                key=key,
                kind=kind,
                order_id=order_id,
                carrier=self.carrier.name,
                carrier_shipment_id=shipment_id,
                carrier_rate_id=rate_id,
            )

    async def _buy(self, purchase: LabelPurchase) -> CarrierShipment:
        bought = await self.carrier.buy(purchase.carrier_shipment_id, purchase.carrier_rate_id)
        log.info(
            "shipping.label.bought",
            key=purchase.key,
            carrier_shipment_id=bought.id,
            service=bought.selected_rate.service if bought.selected_rate else None,
        )
        return bought

    @activity.defn(name=CREATE.name)
    async def create_shipment(self, input: CreateShipmentInput) -> ShipmentInfo:
        """Buy the label of the order's one shipment (idempotent per checkout)."""
        key = _outbound_key(input.checkout_id)
        async with self.db.begin() as session:
            existing = await service.shipment_for_order(session, input.order_id)
            purchase = await service.purchase(session, key)
        if existing is None:
            if purchase is None:
                shipment_id, rate_id = await self._plan(input)
                purchase = await self._record(key, "outbound", input.order_id, shipment_id, rate_id)
            bought = await self._buy(purchase)
            async with self.db.begin() as session:
                existing = await service.record_booking(
                    session,
                    order_id=input.order_id,
                    checkout_id=input.checkout_id,
                    ship_to=input.ship_to.model_dump(mode="json"),
                    carrier=self.carrier.name,
                    bought=bought,
                )
        return ShipmentInfo(
            shipment_id=existing.id,
            carrier=existing.carrier,
            tracking_number=existing.tracking_number,
        )

    async def _void(self, carrier_shipment_id: str) -> None:
        """Void the label (a shipment never bought, or already voided, needs nothing)."""
        result = await self.carrier.refund(carrier_shipment_id)
        if result.bought and not result.voided:
            raise LabelNotVoidable(
                "the carrier refused to void the label: the parcel is on its way",
                carrier_shipment_id=carrier_shipment_id,
                refund_status=result.refund_status,
            )

    @activity.defn(name=CANCEL.name)
    async def cancel_shipment(self, input: CancelShipmentInput) -> bool:
        """Compensation of create: void the label; no-op if none was bought.

        A label bought while its shipment row was never written (the step was cancelled or failed
        after the purchase) is found through its purchase record and voided too: no parcel
        outlives its checkout.
        """
        async with self.db.begin() as session:
            shipment = await service.shipment_for_order(session, input.order_id)
            purchase = await service.purchase(session, _outbound_key(input.checkout_id))
        if shipment is None:
            if purchase is not None:
                await self._void(purchase.carrier_shipment_id)
            return False
        if shipment.status == "cancelled":
            return False
        if shipment.carrier_shipment_id:
            await self._void(shipment.carrier_shipment_id)
        async with self.db.begin() as session:
            locked = await service.shipment_for_order(session, input.order_id, lock=True)
            return locked is not None and await service.mark_cancelled(session, locked)

    @activity.defn(name=WITHDRAW.name)
    async def withdraw_shipment(self, input: WithdrawInput) -> bool:
        """Cancel the order's shipment before pickup and void its label; False without one.

        The shipment is marked cancelled first (a guarded update: tracking that moved it past the
        label answers ParcelWithCarrier), so that a tracking event racing the void moves neither
        it nor the order. When the carrier refuses the void (the parcel moved before its tracking
        reached us) the shipment is restored to what its tracking says: ParcelWithCarrier.
        """
        async with self.db.begin() as session:
            shipment = await service.withdraw(session, input.order_id)
        if shipment is None or shipment.carrier_shipment_id is None:
            return False
        try:
            await self._void(shipment.carrier_shipment_id)
        except LabelNotVoidable as refused:
            async with self.db.begin() as session:
                status = await service.restore_withdrawn(session, shipment.id)
            log.warning("shipping.withdraw.refused", order_id=str(input.order_id), status=status)
            raise ParcelWithCarrier(
                "the carrier has the parcel", order_id=str(input.order_id)
            ) from refused
        log.info("shipping.withdrawn", order_id=str(input.order_id))
        return True

    async def _delivered_to(self, order_id: uuid.UUID) -> Address:
        """Where the order's parcel went (a return leaves from there); ShipmentNotFound."""
        async with self.db.begin() as session:
            shipment = await service.shipment_for_order(session, order_id)
        if shipment is None:
            raise ShipmentNotFound("the order has no shipment", order_id=str(order_id))
        return Address.model_validate(shipment.ship_to)

    @activity.defn(name=RETURN_LABEL.name)
    async def create_return_label(self, input: ReturnLabelInput) -> ReturnLabel:
        """Buy the cheapest return label from the buyer's address to the warehouse (idempotent
        per return)."""
        key = f"return:{input.return_id}"
        async with self.db.begin() as session:
            purchase = await service.purchase(session, key)
        if purchase is None:
            ship_from = input.ship_from or await self._delivered_to(input.order_id)
            fresh = await self._fresh(
                ship_from, _parcel(input.parcel), f"return:{input.order_id}", is_return=True
            )
            cheapest = fresh.cheapest()
            purchase = await self._record(key, "return", input.order_id, fresh.id, cheapest.id)
        bought = await self._buy(purchase)
        rate = bought.selected_rate
        if rate is None or bought.tracking_code is None:
            raise RuntimeError("the carrier answered a bought shipment without its label")
        return ReturnLabel(
            carrier_shipment_id=bought.id,
            tracking_number=bought.tracking_code,
            label_url=bought.label_url,
            carrier=rate.carrier,
            service=rate.service,
            amount=rate.amount.amount,
            currency=rate.amount.currency,
        )
