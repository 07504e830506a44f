"""EasyPost's published description of its objects (its client libraries' types and enums, and
recordings of its real answers), and the validation of what the sandbox sends against it (see
README.md here)."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

HERE = Path(__file__).parent
SCHEMAS = HERE / "schemas.json"
EXAMPLES = HERE / "examples.json"


@cache
def document() -> dict[str, Any]:
    """The vendored schemas with their sources."""
    loaded: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    return loaded


@cache
def examples() -> dict[str, Any]:
    """EasyPost's recorded answers and its published signed webhook event."""
    loaded: dict[str, Any] = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    return loaded


def kinds() -> list[str]:
    """Every object kind described."""
    return sorted(document()["$defs"])


def enum(kind: str, name: str) -> list[str]:
    """The published values of one property (none when it has no enum)."""
    schema = document()["$defs"][kind]["properties"].get(name, {})
    for option in [schema, *schema.get("anyOf", [])]:
        if "enum" in option:
            values: list[str] = option["enum"]
            return values
    return []


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator({"$defs": document()["$defs"], "$ref": f"#/$defs/{kind}"})


class Conformance:
    """Validates objects against the description and counts what it validated: objects by kind
    (nested ones included), enum values met, events by type, errors by code."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.values: Counter[tuple[str, str, str]] = Counter()
        self.events: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def check(self, kind: str, obj: Any) -> None:
        """Fail with every violation when `obj` is not a valid EasyPost `kind` object."""
        errors = sorted(
            _validator(kind).iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]
        )
        assert not errors, f"{kind} does not conform to EasyPost's description:\n" + "\n".join(
            f"  {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
            for e in errors[:20]
        )
        self._count(kind, obj)

    def _count(self, kind: str, obj: Any) -> None:
        self.kinds[kind] += 1
        properties = document()["$defs"][kind]["properties"]
        for name, value in obj.items():
            if isinstance(value, str) and name in properties and enum(kind, name):
                self.values[(kind, name, value)] += 1
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and item.get("object") in document()["$defs"]:
                    self._count(item["object"], item)
                elif isinstance(item, dict) and kind == "Shipment" and name == "messages":
                    self._count("Message", item)

    def answer(self, status: int, body: Any) -> None:
        """One answer of the API: an error envelope, or the object it names."""
        if status >= 400:
            assert set(body) == {"error"}, body
            self.check("Error", body["error"])
            self.errors[f"{status} {body['error']['code']}"] += 1
        else:
            self.check(body["object"], body)

    def event(self, event: Any) -> None:
        """A webhook event and the object it carries."""
        self.check("Event", event)
        self.check(event["result"]["object"], event["result"])
        self.events[event["description"]] += 1
