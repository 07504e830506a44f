"""A reader for the small DBML subset docs/schema.dbml uses: tables, columns, settings, groups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schema.dbml"
EVERY_DATABASE_TABLE = "domain_outbox_events"

_TABLE = re.compile(r"^Table\s+(\w+)(?:\s*\[[^\]]*\])?\s*\{(.*?)^\}", re.M | re.S)
_GROUP = re.compile(r"^TableGroup\s+(\w+)\s*\{(.*?)^\}", re.M | re.S)
_COLUMN = re.compile(r"^\s*(\w+)\s+(\w+)(?:\s*\[([^\]]*)\])?\s*$")


@dataclass(frozen=True)
class Column:
    """A column as the seed declares it."""

    name: str
    type: str
    settings: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Schema:
    """Tables by name, and which tables make up which database."""

    tables: dict[str, list[Column]]
    databases: dict[str, list[str]]


def load(path: Path = SCHEMA) -> Schema:
    """Parse the DBML file; the outbox table belongs to every database."""
    text = re.sub(r"//.*", "", path.read_text())
    tables: dict[str, list[Column]] = {}
    for match in _TABLE.finditer(text):
        columns = []
        for line in match.group(2).splitlines():
            col = _COLUMN.match(line)
            if col:
                settings = frozenset(
                    s.strip() for s in (col.group(3) or "").split(",") if s.strip()
                )
                columns.append(Column(col.group(1), col.group(2), settings))
        tables[match.group(1)] = columns
    databases: dict[str, list[str]] = {}
    for match in _GROUP.finditer(text):
        database = match.group(1).removesuffix("_db")
        databases[database] = [*match.group(2).split(), EVERY_DATABASE_TABLE]
    return Schema(tables, databases)
