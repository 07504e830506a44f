"""Returns of delivered orders: the workflow, its payloads and its client."""
