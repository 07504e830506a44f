"""Shopping carts: items with a price snapshot, locked while a checkout runs."""
