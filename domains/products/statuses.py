"""A product listing's lifecycle: the catalog's vocabulary, plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class ProductStatus(StrEnum):
    """Lifecycle of a product listing."""

    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"
