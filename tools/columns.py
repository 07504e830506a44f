"""Plain-text tables for the tools' reports: columns as wide as their widest cell."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(rows: Sequence[Sequence[str]], *, right: bool = True, indent: str = "") -> list[str]:
    """Each row as one line, cells padded to their column's width (right- or left-aligned) and
    separated by two spaces; `indent` before each line."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    pad = str.rjust if right else str.ljust
    return [
        indent + "  ".join(pad(cell, width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
