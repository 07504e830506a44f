"""The checkout saga.

`contract` is what everybody else relies on (queues, ids, search attributes, statuses, steps,
failure codes), `models` the workflow's input and answers, `workflow` the orchestration, `client`
the one way to start, signal, update and describe a checkout.
"""
