"""Inventory activities: `contract` (names and payloads, what the workflow sees), `activities`."""
