"""Stripe's own wire format: form-encoded bodies with bracket notation.

The official SDKs send `application/x-www-form-urlencoded` bodies (`metadata[checkout_id]=…`,
`payment_method_types[0]=card`, `confirm=true`); this module turns them into the same dict a JSON
body gives, so both reach the same request models and the same idempotency hash.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from sandbox.psp.errors import invalid_value

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Form values are all strings; these parameters are integers or booleans in Stripe's API.
INT_PARAMS = frozenset({"amount", "amount_to_capture"})
BOOL_PARAMS = frozenset({"confirm"})
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def is_form(content_type: str | None) -> bool:
    """Whether a Content-Type header names a form-encoded body."""
    return (content_type or "").split(";")[0].strip().lower() == FORM_CONTENT_TYPE


def _path(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise invalid_value(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_PART.findall(match.group(2))]


def _insert(target: dict[str, Any], parts: list[str], value: str, key: str) -> None:
    node = target
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        name = str(len(node)) if part == "" else part  # `list[]=a&list[]=b`: append
        if last:
            if name in node:
                raise invalid_value(f"Duplicate parameter: {key}", param=key)
            node[name] = value
            return
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise invalid_value(f"Invalid parameter: {key}", param=key)
        node = child


def _lists(node: Any) -> Any:
    """Dicts keyed 0..n-1 (`a[0]`, `a[1]` or `a[]`) become lists, as Stripe reads them."""
    if not isinstance(node, dict):
        return node
    converted = {name: _lists(value) for name, value in node.items()}
    if converted and all(name.isdigit() for name in converted):
        indexes = sorted(int(name) for name in converted)
        if indexes == list(range(len(indexes))):
            return [converted[str(index)] for index in indexes]
    return converted


def _coerce(name: str, value: Any) -> Any:
    if name in INT_PARAMS and isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    if name in BOOL_PARAMS and value in ("true", "false"):
        return value == "true"
    return value


def decode(raw: bytes) -> dict[str, Any]:
    """The body as the dict its JSON form would be (`a[b]=c` is `{"a": {"b": "c"}}`)."""
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise invalid_value("The form-encoded body is invalid.") from None
    tree: dict[str, Any] = {}
    for key, value in pairs:
        _insert(tree, _path(key), value, key)
    data: dict[str, Any] = _lists(tree)
    return {name: _coerce(name, value) for name, value in data.items()}
