"""Shared, domain-free infrastructure: settings, logging, databases, outbox, money, errors."""
