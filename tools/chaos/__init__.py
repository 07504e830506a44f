"""`just chaos`: the whole platform under a realistic load while its processes are killed and the
payment provider and the carrier are down or slow.

`python -m tools.chaos` starts its own platform (`python -m devstack`, the supervisor of `just up`)
in a fresh temporary DATA_DIR on free ports, runs a mixed checkout workload over the HTTP API
(`workload`, `journey`, `client`), injects a schedule of faults while the load runs (`faults`),
waits until nothing is in flight and audits the databases, Temporal and the provider's ledger
against docs/reference/invariants.md (`audit`), then prints a report (`report`) ending in JSON.
`tools/soak.py` reuses the stack and the load generator without faults.
"""
