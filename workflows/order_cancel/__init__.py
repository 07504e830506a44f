"""Cancelling an order after its checkout: the workflow, its payloads and its client."""
