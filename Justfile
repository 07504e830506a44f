# Task runner (rust-just, from the dev extra). `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := env("PYTHON", "python3")

# List the recipes.
default:
    @just --list

# Run the whole platform locally until Ctrl-C / SIGTERM.
up:
    exec {{python}} -m kit.stack

# Run the whole test suite against real PostgreSQL, Temporal and NATS.
test *ARGS:
    exec {{python}} -m pytest {{ARGS}}

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
