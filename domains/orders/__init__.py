"""Orders: one per completed-or-attempted checkout, with items, addresses and a state history."""
