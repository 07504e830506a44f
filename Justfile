# Task runner (rust-just, from the dev extra). `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := env("PYTHON", "python3")

# List the recipes.
default:
    @just --list

# Run the whole platform locally until Ctrl-C / SIGTERM.
up:
    exec {{python}} -m devstack

# Run the whole test suite against real PostgreSQL, Temporal and NATS.
test *ARGS:
    exec {{python}} -m pytest {{ARGS}}

# The fast tier alone: the checkout workflow against stand-in activities on the time-skipping
# server (no PostgreSQL, NATS or sandbox), in seconds.
test-fast *ARGS:
    exec {{python}} -m pytest tests/workflows/fast {{ARGS}}

# Create missing domain databases and upgrade all ten to head.
migrate:
    {{python}} -m db.migrate

# Style, lint and types.
lint:
    ruff check .
    ruff format --check .
    mypy

# Rewrite the code into the house style.
fmt:
    ruff format .
    ruff check --fix .

# Benchmark: checkouts/s through the saga vs. a no-op workflow of the same shape (last line: JSON).
bench *ARGS:
    {{python}} -m tools.bench {{ARGS}}

# e.g. `just chaos --checkouts 1000 --faults all --rounds 2` (`python -m tools.chaos --help`).
# Chaos: its own platform under a mixed checkout load while processes are killed; audits the invariants (docs/reference/invariants.md).
chaos *ARGS:
    exec {{python}} -m tools.chaos {{ARGS}}

# e.g. `just soak --minutes 30 --rate 2`; `--minutes 2` is a smoke run.
# Soak: steady load, no faults; fails when memory, files, connections or backlogs keep growing.
soak *ARGS:
    exec {{python}} -m tools.soak {{ARGS}}

# Fuzz the running API (`just up`) from its OpenAPI document with a dev token: no 5xx allowed.
fuzz EXAMPLES="100":
    #!/usr/bin/env bash
    set -euo pipefail
    api="http://127.0.0.1:${API_PORT:-8000}"
    token=$(curl -sf -X POST "$api/v1/dev/tokens" -H 'content-type: application/json' \
        -d '{"user_id": "00000000-0000-4000-8000-000000000001", "scopes": ["customer", "operator"]}' \
        | {{python}} -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
    st run "$api/openapi.json" --checks not_a_server_error --exclude-path /healthz \
        --max-examples {{EXAMPLES}} --header "Authorization: Bearer $token"
