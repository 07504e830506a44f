"""Simulators of outside systems (payment provider, carrier) as real HTTP services."""
