"""Every stable error `code` the platform can answer, collected from the code itself.

Three sources, each read the way it is written:

- typed business errors: every subclass of `kit.errors.DomainError` (the modules that declare
  one with `code=` are found by reading the source, then imported), with its `http_status`;
- the API's own answers: `problem(status, "code", ...)` and `ApiError(status, "code", ...)` calls
  under api/ with a literal or module-level constant code (read from the syntax tree, so a code
  added anywhere in api/ is seen), and the `{status: "code"}.get(..., "code")` mapping of
  framework errors in api/errors.py;
- a checkout's failure codes (`FailureCode`), reported in the checkout's `failure.code`.

`python -m tools.error_codes` prints a draft row of docs/reference/errors.md for every code the
table lacks and names the rows whose code no longer exists (tests/test_reference.py fails on
either).
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ERRORS_REFERENCE = ROOT / "docs" / "reference" / "errors.md"
# Where typed errors may be declared, and where the API builds its answers.
ERROR_PACKAGES = ("kit", "domains", "activities", "workflows", "api")
API_PACKAGE = "api"
ANSWER_BUILDERS = frozenset({"problem", "ApiError"})


@dataclass
class Code:
    """One stable code: the HTTP statuses it is answered with, and where it comes from."""

    code: str
    statuses: set[int] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    meaning: str = ""


def _python_files(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _declares_domain_error(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ClassDef) and any(k.arg == "code" for k in node.keywords)
        for node in ast.walk(tree)
    )


def domain_errors(codes: dict[str, Code]) -> None:
    """Every DomainError subclass, after importing each module that declares one."""
    for package in ERROR_PACKAGES:
        for path in _python_files(package):
            if _declares_domain_error(ast.parse(path.read_text(), str(path))):
                importlib.import_module(_module(path))
    from kit.errors import DomainError

    pending: list[type[DomainError]] = [DomainError]
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if kind is DomainError:
            continue
        entry = codes.setdefault(kind.code, Code(kind.code))
        entry.statuses.add(kind.http_status)
        entry.sources.add(f"{kind.__module__}.{kind.__qualname__}")
        doc = " ".join((kind.__doc__ or "").split("\n\n")[0].split())
        entry.meaning = entry.meaning or doc


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's top-level `NAME = "text"` assignments."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    return found


def _text(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _builder(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _answers(tree: ast.Module) -> Iterator[tuple[str, int | None]]:
    """(code, status) of every answer a module builds with a code it spells out."""
    constants = _constants(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if _builder(node) in ANSWER_BUILDERS and len(node.args) >= 2:
            code, status = _text(node.args[1], constants), node.args[0]
            if code is not None:
                number = status.value if isinstance(status, ast.Constant) else None
                yield code, number if isinstance(number, int) else None
        elif _builder(node) == "get" and isinstance(node.func, ast.Attribute):
            mapping = node.func.value
            if isinstance(mapping, ast.Dict) and len(node.args) == 2:
                for key, value in zip(mapping.keys, mapping.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(key.value, int):
                        code = _text(value, constants)
                        if code is not None:
                            yield code, key.value
                default = _text(node.args[1], constants)
                if default is not None:
                    yield default, None


def api_answers(codes: dict[str, Code]) -> None:
    """The codes the API spells out where it answers (statuses: literal ones only)."""
    for path in _python_files(API_PACKAGE):
        for code, status in _answers(ast.parse(path.read_text(), str(path))):
            entry = codes.setdefault(code, Code(code))
            if status is not None:
                entry.statuses.add(status)
            entry.sources.add(str(path.relative_to(ROOT)))


def failure_codes(codes: dict[str, Code]) -> None:
    """A checkout's failure codes: the values of `FailureCode`."""
    from workflows.checkout.contract import FailureCode

    for member in FailureCode:
        codes.setdefault(member.value, Code(member.value)).sources.add("FailureCode")


def collect() -> dict[str, Code]:
    """Every stable code, by name."""
    codes: dict[str, Code] = {}
    domain_errors(codes)
    api_answers(codes)
    failure_codes(codes)
    return codes


@dataclass(frozen=True)
class Row:
    """One row of the errors table as written."""

    code: str
    status_cell: str
    line: int

    @property
    def statuses(self) -> set[int]:
        """The HTTP statuses the row names (3-digit numbers in its status cell)."""
        return {int(s) for s in re.findall(r"\b[1-5]\d\d\b", self.status_cell)}


def table(text: str) -> dict[str, Row]:
    """The rows of the errors table: `| `code` | status | meaning | retry |`."""
    rows: dict[str, Row] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = Row(match.group(1), match.group(2).strip(), number)
    return rows


def differences(codes: dict[str, Code], rows: dict[str, Row]) -> list[str]:
    """What the table gets wrong, one line each (empty when it matches the code)."""
    problems = []
    for name in sorted(set(codes) - set(rows)):
        entry = codes[name]
        statuses = ", ".join(map(str, sorted(entry.statuses))) or "no HTTP status"
        problems.append(f"missing: `{name}` ({statuses}; from {', '.join(sorted(entry.sources))})")
    for name in sorted(set(rows) - set(codes)):
        problems.append(f"stale: `{name}` (line {rows[name].line}) is in no error class or answer")
    for name in sorted(set(rows) & set(codes)):
        if rows[name].statuses != codes[name].statuses:
            problems.append(
                f"status: `{name}` (line {rows[name].line}) says {sorted(rows[name].statuses)}, "
                f"the code answers {sorted(codes[name].statuses)}"
            )
    return problems


def draft_row(entry: Code) -> str:
    """A row to paste and finish by hand (meaning and retry need a person)."""
    status = ", ".join(map(str, sorted(entry.statuses))) or "—"
    return f"| `{entry.code}` | {status} | {entry.meaning or 'TODO'} | TODO |"


def main() -> int:
    """Print what the table lacks (draft rows) or has in excess; exit 1 when it differs."""
    codes = collect()
    rows = table(ERRORS_REFERENCE.read_text())
    problems = differences(codes, rows)
    for name in sorted(set(codes) - set(rows)):
        print(draft_row(codes[name]))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
