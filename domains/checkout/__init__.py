"""Checkout sessions and their steps: the durable record of each saga run."""
