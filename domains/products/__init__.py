"""Catalog: products, variants, time-ranged prices, images."""
