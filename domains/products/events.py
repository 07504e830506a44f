"""Events the catalog publishes through its outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel


class ProductCreated(BaseModel):
    """`product.created`."""

    product_id: uuid.UUID
    seller_id: uuid.UUID
    variant_ids: list[uuid.UUID]


class PriceChangedEvent(BaseModel):
    """`product.price_changed`: a new open price for a variant in a currency."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    currency: str
    amount: Decimal
    valid_from: datetime
