"""Stock per variant and reservations held by checkouts."""
