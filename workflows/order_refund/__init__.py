"""Refunding part of an order after the sale: the workflow, its payloads and its client."""
