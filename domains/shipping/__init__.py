"""Shipments booked with a carrier and their tracking events."""
