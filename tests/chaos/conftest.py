"""The `chaos` marker: `pytest -m "not chaos"` deselects the chaos run (it runs by default)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here, so that --strict-markers knows it without pyproject."""
    config.addinivalue_line(
        "markers", "chaos: a whole platform under load and faults; deselect with -m 'not chaos'"
    )
