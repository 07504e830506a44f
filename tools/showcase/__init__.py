"""The after-sale flows, shown end to end against a running platform (`just up`).

`python -m tools.showcase --api URL --psp URL [--only NAME ...] [--list]`

Each scenario drives the platform only through its public HTTP API, as a buyer and an operator
(development tokens from `POST /v1/dev/tokens`, so the API must run with `ENV=dev`), plus what a
real user does at the providers: the payment sandbox's ledger (`GET /v1/ledger`), its dashboard
(refunds made with the official `stripe` SDK), the carrier's test helper (a parcel moved now)
and the tax fault switch. It prints what it did and the key answers and checks the expected
outcome; the exit status is 1 when any check missed.
"""
