"""The application layer between HTTP and the domains.

A router parses the request, calls one function here and shapes the answer. A service function
takes the wired platform (`api.deps.Platform`), opens and owns the transactions on the domains'
databases, talks to checkouts only through `CheckoutClient` (`wired.checkouts`), and raises
`ApiError` or a domain error that `api.errors` turns into problem+json.

Whatever spans domains, Temporal or a policy lives here; a handler that reads or writes one
domain in one transaction may call that domain's service itself (users, most of the catalog).

- `checkouts`: idempotent start, status (the workflow while it runs, the database once ended),
  cancel.
- `webhooks`: payment and carrier webhook intake (verify, inbox, deliver, settle after the end).
- `shipping`: shipping rates for a cart (its parcel from the catalog, priced by the carrier, kept
  as quotes).
- `ops`: visibility listing, the stuck policy, one checkout in detail, an operator's cancel.
- `carts`, `orders`, `catalog`: reads and writes that cross two domains' databases.
"""
