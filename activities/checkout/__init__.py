"""The checkout's own record: `contract` (names and payloads), `activities` (local activities)."""
