"""Coupon failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CouponNotFound(NotFound, code="coupon_not_found"):
    """No coupon with this code."""


class CouponCodeTaken(Conflict, code="coupon_code_taken"):
    """Another coupon already has this code."""


class CouponInvalid(DomainError, code="coupon_invalid"):
    """The coupon does not apply: unknown, outside its window, below its minimum, wrong currency."""


class CouponExhausted(DomainError, code="coupon_exhausted"):
    """The coupon has no redemptions left (overall or for this user)."""
