"""Local services from PyPI wheels (PostgreSQL, Temporal dev server, NATS), run as child processes.

Used by `just up` and by the test suite's session fixtures; never in production, where the
platform is pointed at real services through their URLs.
"""
