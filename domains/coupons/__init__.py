"""Coupons and the redemptions checkouts hold, confirm or release."""
