"""Documents made from the code (docs/reference/api.md, configuration.md): print one, or check
that the committed copy is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def out_of_date(path: Path, render: Callable[[], str], module: str) -> str | None:
    """Why the committed `path` is not what `render` makes now, or None when it is."""
    if path.read_text() == render():
        return None
    return f"{path} is out of date: python -m {module} > {path}"


def main(path: Path, render: Callable[[], str], module: str, argv: list[str] | None = None) -> int:
    """`python -m <module>` prints the document; with --check it exits 1 when `path` differs."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    if not parser.parse_args(argv).check:
        sys.stdout.write(render())
        return 0
    problem = out_of_date(path, render, module)
    if problem:
        print(problem)
    return 1 if problem else 0
