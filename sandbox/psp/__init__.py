"""The payment-provider sandbox: a Stripe-shaped HTTP service backed by SQLite."""

from sandbox.psp.app import create_app

__all__ = ["create_app"]
