"""Temporal activities, one module and one class per domain."""
