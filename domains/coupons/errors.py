"""Coupon failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CouponNotFound(NotFound):
    """No coupon with this code."""

    code = "coupon_not_found"


class CouponCodeTaken(Conflict):
    """Another coupon already has this code."""

    code = "coupon_code_taken"


class CouponInvalid(DomainError):
    """The coupon does not apply: unknown, outside its window, below its minimum, wrong currency."""

    code = "coupon_invalid"


class CouponExhausted(DomainError):
    """The coupon has no redemptions left (overall or for this user)."""

    code = "coupon_exhausted"
