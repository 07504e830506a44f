"""Operator and developer tools: seeding, invariant checks, the benchmark."""
