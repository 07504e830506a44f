"""Worker processes: `python -m workers <domain> [...]`, one task queue per domain."""
