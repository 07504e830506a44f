"""Stripe's published description of its objects, for the API version of the pinned `stripe`
package, and the validation of what the sandbox sends against it (see README.md here)."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).with_name("schemas.json")
# The objects an event may carry, by the `object` they say they are.
KINDS = frozenset({"payment_intent", "charge", "refund", "dispute"})
# The line items a Stripe Tax object lists, by the object's kind.
LINE_ITEMS = {
    "tax.calculation": "tax.calculation_line_item",
    "tax.transaction": "tax.transaction_line_item",
}


@cache
def document() -> dict[str, Any]:
    """The vendored schemas with their source."""
    loaded: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    return loaded


def api_version() -> str:
    """The API version the schemas describe."""
    return str(document()["source"]["api_version"])


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(document()["schemas"][kind])


class Conformance:
    """Validates objects against the schemas and counts what it validated, by kind and event."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def check(self, kind: str, obj: Any) -> None:
        """Fail with every violation when `obj` is not a valid Stripe `kind` object."""
        errors = sorted(
            _validator(kind).iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]
        )
        assert not errors, f"{kind} does not conform to Stripe {api_version()}:\n" + "\n".join(
            f"  {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
            for e in errors[:20]
        )
        self.kinds[kind] += 1
        if kind == "payment_intent" and obj.get("latest_charge") is not None:
            if isinstance(obj["latest_charge"], dict):
                self.check("charge", obj["latest_charge"])
        if kind == "charge":
            for refund in obj["refunds"]["data"]:
                self.check("refund", refund)
        if kind in LINE_ITEMS and isinstance(obj.get("line_items"), dict):
            for line in obj["line_items"]["data"]:
                self.check(LINE_ITEMS[kind], line)

    def intent(self, obj: Any) -> None:
        """A payment intent (and the charge it expands)."""
        self.check("payment_intent", obj)

    def error(self, body: Any) -> None:
        """An error answer: `{"error": {...}}`, and the intent a card error carries."""
        assert set(body) == {"error"}, body
        self.check("error", body["error"])
        if body["error"].get("payment_intent") is not None:
            self.intent(body["error"]["payment_intent"])

    def event(self, event: Any) -> None:
        """A webhook event and the object it carries."""
        self.check("event", event)
        obj = event["data"]["object"]
        assert obj["object"] in KINDS, obj["object"]
        self.check(obj["object"], obj)
        self.events[event["type"]] += 1
