"""Generate tests/sandbox/easypost_spec/: EasyPost's published description of the objects the
sandbox's carrier API sends, as JSON Schemas.

EasyPost publishes no OpenAPI document; its official client libraries are the description:

- `EasyPost/easypost-go`: the structs the API's JSON is read into (`json` tags and Go types);
- `EasyPost/easypost-node`: the TypeScript typings (`types/**/*.d.ts`): property types, which may
  be null, and the enum values (tracker statuses, tracker status details, refund statuses, event
  statuses, fee types, error codes);
- `EasyPost/easypost-python`'s installed package: the id prefix of each object kind;
- the libraries' test cassettes (VCR recordings of real API answers, `easypost-python`
  `tests/cassettes`, `easypost-go` `cassettes`) and `EasyPost/examples` (the webhook event body,
  secret and signature every library's tests verify): which properties EasyPost always sends, and
  real values.

Two steps. `extract` reads git checkouts of those repositories (at their HEAD) and writes the
facts, trimmed, beside the tests: `sources.json` (fields and types per object, enums, id
prefixes, every error code the recordings show) and `examples.json` (real answers of shipment
create, buy, refund and retrieve, tracker create and retrieve, two errors, the signed webhook).
The default step builds `schemas.json` from those two files alone:

    python -m tools.easypost_schema extract --go DIR --node DIR --python DIR --examples DIR
    python -m tools.easypost_schema

A property exists when any description names it (Go, TypeScript, a recording); its types are the
union of what they say; it may be null when the typings say `| null` or a recording shows null; it
is required when every recorded object of its kind has it. Objects are closed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPEC_DIR = Path(__file__).resolve().parent.parent / "tests" / "sandbox" / "easypost_spec"
SOURCES = SPEC_DIR / "sources.json"
EXAMPLES = SPEC_DIR / "examples.json"
OUTPUT = SPEC_DIR / "schemas.json"

# kind -> (Go struct, TypeScript interface)
KINDS: dict[str, tuple[str, str]] = {
    "Shipment": ("Shipment", "IShipment"),
    "Rate": ("Rate", "IRate"),
    "PostageLabel": ("PostageLabel", "IPostageLabel"),
    "Tracker": ("Tracker", "ITracker"),
    "TrackingDetail": ("TrackingDetail", "ITrackingDetail"),
    "TrackingLocation": ("TrackingLocation", "ITrackingLocation"),
    "CarrierDetail": ("TrackingCarrierDetail", "ICarrierDetail"),
    "Address": ("Address", "IAddress"),
    "Parcel": ("Parcel", "IParcel"),
    "Fee": ("Fee", "IFee"),
    "Form": ("Form", "IForm"),
    "Event": ("Event", "IEvent"),
    "Message": ("CarrierMessage", "IMessage"),
    "Error": ("APIError", "IError"),
    "FieldError": ("FieldError", "IFieldError"),
}
# Kinds the API labels with an `object` property (the others are nested plain objects).
UNLABELLED = frozenset({"Message", "Error", "FieldError"})
# Plain nested objects, by the kind and property holding them.
NESTED = {("Shipment", "messages"): "Message", ("Error", "errors"): "FieldError"}
GO_FILES = (
    "shipment.go", "rate.go", "tracker.go", "address.go", "parcel.go", "event.go", "fee.go",
    "carrier_message.go", "error.go",
)  # fmt: skip
TS_FILES = (
    "base", "Shipment/Shipment", "Shipment/PostageLabel", "Shipment/Message", "Shipment/Form",
    "Rate/Rate", "Tracker/Tracker", "Tracker/TrackerStatus", "Tracker/TrackerStatusDetail",
    "Tracker/TrackingDetail", "Tracker/TrackingLocation", "Tracker/CarrierDetail",
    "Address/Address", "Parcel/Parcel", "Event/Event", "Fee/Fee", "Fee/FeeType", "errors/Error",
    "errors/ErrorCode", "errors/FieldError",
)  # fmt: skip
# The recordings of the operations the platform uses (every answer they hold is an example).
CASSETTES = {
    "easypost-python": tuple(
        f"tests/cassettes/test_{name}.yaml"
        for name in (
            "shipment_create", "shipment_buy", "shipment_refund", "shipment_retrieve",
            "tracker_create", "tracker_retrieve", "error", "error_alternative_format",
        )
    ),
    "easypost-go": tuple(
        f"cassettes/Test{name}.yaml"
        for name in ("ShipmentCreate", "ShipmentBuy", "ShipmentRefund", "TrackerCreate")
    ),
}  # fmt: skip
CASSETTE_DIRS = {"easypost-python": "tests/cassettes", "easypost-go": "cassettes"}
WEBHOOK_BODY = "official/fixtures/event-body.json"
WEBHOOK_FIXTURES = "official/fixtures/client-library-fixtures.json"
# The event types EasyPost's Events reference lists (docs.easypost.com/docs/events, "Possible
# Event Types"); the libraries type `description` as a plain string.
EVENT_TYPES = (
    "batch.created", "batch.updated", "claims.submitted", "claims.cancelled", "claims.updated",
    "claims.rejected", "claims.approved", "insurance.purchased", "insurance.cancelled",
    "payment.created", "payment.completed", "payment.failed", "refund.successful", "report.new",
    "report.empty", "report.available", "report.failed", "scan_form.created",
    "scan_form.updated", "tracker.created", "tracker.updated",
)  # fmt: skip
# Enums the typings give a sibling property but not this one: a tracking detail's status detail
# is a tracker status detail (every recorded one is), typed `string`.
EXTRA_ENUMS = {("TrackingDetail", "status_detail"): "ITrackerStatusDetail"}
# Properties holding another object's id, by the kind whose prefix they carry.
FOREIGN_IDS = {"shipment_id": "Shipment", "carrier_account_id": "CarrierAccount", "user_id": "User"}
RATES_KEPT = 2
DETAILS_KEPT = 3
GO_SCALARS = {"string": "string", "bool": "boolean", "int": "integer", "int64": "integer",
              "float64": "number", "DateTime": "string"}  # fmt: skip
TS_SCALARS = {"string": "string", "number": "number", "boolean": "boolean", "Object": "object"}


# --- extract: git checkouts -> sources.json, examples.json ---------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _origin(repo: Path, name: str) -> dict[str, str]:
    commit, date = _git(repo, "log", "-1", "--format=%H %cI").split()
    return {"repository": f"github.com/EasyPost/{name}", "commit": commit, "date": date}


def go_structs(source: str) -> dict[str, dict[str, str]]:
    """Every struct of a Go file: json name -> Go type (embedded structs by their name)."""
    structs: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"^type (\w+) struct \{\n(.*?)^\}", source, re.M | re.S):
        fields: dict[str, str] = {}
        for line in body.splitlines():
            tagged = re.match(r'\s+\w+\s+(\S+)\s+`json:"([^,"]+)', line)
            embedded = re.match(r"\s+(\w+)\s*(//.*)?$", line)
            if tagged:
                fields[tagged.group(2)] = tagged.group(1)
            elif embedded:
                fields[f"<{embedded.group(1)}>"] = "embedded"
        structs[name] = fields
    return structs


def ts_declarations(source: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The interfaces (extends, property -> type text) and string-literal aliases of a .d.ts."""
    interfaces: dict[str, Any] = {}
    pattern = r"^export declare interface (\w+)(?:<\w+>)?(?: extends (.*?))? \{\n(.*?)^\}"
    for name, extends, body in re.findall(pattern, source, re.M | re.S):
        props = dict(re.findall(r"^  (\w+\??):\s*([^;]+);", body, re.M))
        interfaces[name] = {"extends": re.findall(r"I\w+(?:<'\w+'>)?", extends), "fields": props}
    aliases = {
        name: re.findall(r"'([^']+)'", body)
        for name, body in re.findall(r"^export declare type (\w+) =(.*?);", source, re.M | re.S)
    }
    return interfaces, aliases


def _id_prefixes(python_repo: Path) -> dict[str, str]:
    tree = ast.parse(_git(python_repo, "show", "HEAD:easypost/easypost_object.py"))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Dict):
            mapping: dict[str, str] = ast.literal_eval(node.value)
            return mapping
    raise ValueError("no id prefix table in easypost/easypost_object.py")


def _answers(repo: Path, path: str) -> list[tuple[str, int, Any]]:
    """The JSON answers of one cassette: (request, status, body)."""
    out = []
    for interaction in yaml.safe_load(_git(repo, "show", f"HEAD:{path}"))["interactions"]:
        request, response = interaction["request"], interaction["response"]
        body = response["body"]
        text = body["string"] if isinstance(body, dict) else body
        # VCR (Python) nests the status, go-vcr gives it as `code`.
        status = response["code"] if "code" in response else response["status"]["code"]
        url = request.get("uri") or request.get("url")
        try:
            out.append((f"{request['method']} {url}", int(status), json.loads(text)))
        except ValueError:
            continue
    return out


def _trim(obj: Any) -> Any:
    """An answer made smaller: the first rates and tracking details only."""
    if isinstance(obj, list):
        return [_trim(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    trimmed = {key: _trim(value) for key, value in obj.items()}
    for key, kept in (("rates", RATES_KEPT), ("tracking_details", DETAILS_KEPT)):
        if isinstance(trimmed.get(key), list):
            trimmed[key] = trimmed[key][:kept]
    return trimmed


def _recorded_codes(repo: Path, directory: str) -> set[str]:
    codes = set()
    for path in _git(repo, "ls-tree", "--name-only", "HEAD", f"{directory}/").split():
        for _, _, body in _answers(repo, path):
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                codes.add(str(body["error"].get("code")))
    return codes


def extract(go: Path, node: Path, python: Path, examples: Path) -> None:
    """Write sources.json and examples.json from checkouts of EasyPost's repositories."""
    repos = {"easypost-go": go, "easypost-python": python}
    structs: dict[str, dict[str, str]] = {}
    for filename in GO_FILES:
        structs.update(go_structs(_git(go, "show", f"HEAD:{filename}")))
    interfaces: dict[str, Any] = {}
    aliases: dict[str, list[str]] = {}
    for filename in TS_FILES:
        found, named = ts_declarations(_git(node, "show", f"HEAD:types/{filename}.d.ts"))
        interfaces.update(found)
        aliases.update(named)
    wanted = {go_name for go_name, _ in KINDS.values()} | {"LibraryError"}
    codes = set().union(*(_recorded_codes(repos[r], d) for r, d in CASSETTE_DIRS.items()))
    sources = {
        "origin": {
            "easypost-go": _origin(go, "easypost-go"),
            "easypost-node": _origin(node, "easypost-node"),
            "easypost-python": _origin(python, "easypost-python"),
            "examples": _origin(examples, "examples"),
        },
        "go": {name: fields for name, fields in structs.items() if name in wanted},
        "typescript": {"interfaces": interfaces, "aliases": aliases},
        "id_prefixes": _id_prefixes(python),
        "recorded_error_codes": sorted(codes),
    }
    answers: dict[str, dict[str, Any]] = {}
    for name, paths in CASSETTES.items():
        for path in paths:
            for request, status, body in _answers(repos[name], path):
                if isinstance(body, dict) and (body.get("object") in KINDS or "error" in body):
                    # Cassettes share recordings (a create before each buy): each answer once.
                    answers.setdefault(
                        json.dumps(body, sort_keys=True),
                        {"source": f"{name} {path}", "request": request, "status": status,
                         "body": _trim(body)},
                    )  # fmt: skip
    hooks = json.loads(_git(examples, "show", f"HEAD:{WEBHOOK_FIXTURES}"))["webhooks"]
    webhook = {
        "source": f"examples {WEBHOOK_BODY}, {WEBHOOK_FIXTURES} (webhooks)",
        "body": json.loads(_git(examples, "show", f"HEAD:{WEBHOOK_BODY}")),
        # The bytes signed: the body compact, its keys in their published order.
        "raw_body": json.dumps(
            json.loads(_git(examples, "show", f"HEAD:{WEBHOOK_BODY}")), separators=(",", ":")
        ),
        "secret": hooks["secret"],
        "hmac_signature": hooks["hmac_signature"],
    }
    _write(SOURCES, sources)
    _write(EXAMPLES, {"responses": list(answers.values()), "webhook": webhook})


# --- build: sources.json + examples.json -> schemas.json -----------------------------------------


@dataclass
class Property:
    """What the descriptions say of one property: its alternatives, enum and nullability."""

    types: set[str] = field(default_factory=set)
    refs: set[str] = field(default_factory=set)
    items: Property | None = None
    enum: set[str] = field(default_factory=set)
    nullable: bool = False
    anything: bool = False

    def item(self) -> Property:
        """The description of the array's items."""
        self.types.add("array")
        if self.items is None:
            self.items = Property()
        return self.items

    def schema(self) -> dict[str, Any]:
        """As JSON Schema."""
        if self.anything:
            return {}
        options: list[dict[str, Any]] = []
        for kind in sorted(self.refs):
            options.append({"$ref": f"#/$defs/{kind}"})
        for name in sorted(self.types - ({"object"} if self.refs else set())):
            if name == "array":
                options.append(
                    {"type": "array", "items": self.items.schema() if self.items else {}}
                )
            elif name == "string" and self.enum:
                options.append({"enum": sorted(self.enum)})
            elif not (name == "integer" and "number" in self.types):
                options.append({"type": name})
        if self.nullable:
            options.append({"type": "null"})
        if not options:
            return {}
        return options[0] if len(options) == 1 else {"anyOf": options}


GO_KINDS = {go_name: kind for kind, (go_name, _) in KINDS.items()}
TS_KINDS = {ts_name: kind for kind, (_, ts_name) in KINDS.items()}


def go_type(text: str, into: Property) -> None:
    """Add what a Go type says of a property to `into`."""
    text = text.lstrip("*")
    if text.startswith("[]"):
        go_type(text[2:], into.item())
    elif text in GO_SCALARS:
        into.types.add(GO_SCALARS[text])
    elif text in GO_KINDS:
        into.refs.add(GO_KINDS[text])
    elif text.startswith("map[") or text[:1].isupper():
        into.types.add("object")
    # interface{} says nothing: the typings and the recordings do


def ts_type(text: str, into: Property, aliases: dict[str, list[str]]) -> None:
    """Add what a TypeScript type says of a property to `into` (aliases: the string enums)."""
    for part in (p.strip() for p in text.split("|") if p.strip()):
        if part == "null":
            into.nullable = True
        elif part.startswith("'"):
            into.types.add("string")
            into.enum.add(part.strip("'"))
        elif part.endswith("[]"):
            ts_type(part[:-2], into.item(), aliases)
        elif part in TS_SCALARS:
            into.types.add(TS_SCALARS[part])
        elif part in aliases:
            into.types.add("string")
            into.enum.update(aliases[part])
        elif part in TS_KINDS:
            into.refs.add(TS_KINDS[part])
        elif part.startswith("I"):
            into.types.add("object")
        else:
            into.anything = True  # any


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer"}
    return "null" if value is None else names.get(type(value), "number")


@dataclass
class Recorded:
    """What the recordings show: per kind, how many objects and their properties' values."""

    seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    present: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    values: dict[tuple[str, str], list[Any]] = field(default_factory=lambda: defaultdict(list))

    def walk(self, obj: Any, kind: str | None) -> None:
        """Record `obj` (of `kind` when known) and every object inside it."""
        if isinstance(obj, list):
            for item in obj:
                self.walk(item, kind)
            return
        if not isinstance(obj, dict):
            return
        kind = obj["object"] if obj.get("object") in KINDS else kind
        if kind is None:
            for value in obj.values():
                self.walk(value, None)
            return
        self.seen[kind] += 1
        for name, value in obj.items():
            self.present[kind][name] = self.present[kind].get(name, 0) + 1
            self.values[(kind, name)].append(value)
            self.walk(value, NESTED.get((kind, name)))


def _recorded_type(values: list[Any], into: Property, nested: str | None) -> None:
    for value in values:
        name = _json_type(value)
        if name == "null":
            into.nullable = True
        elif name == "array":
            _recorded_type(value, into.item(), nested)
        elif name == "object" and value.get("object") in KINDS:
            into.refs.add(value["object"])
        elif name == "object" and nested:
            into.refs.add(nested)
        else:
            into.types.add(name)


def _ts_fields(ts: dict[str, Any], name: str) -> dict[str, str]:
    interface = ts["interfaces"].get(name)
    if interface is None:
        return {}
    fields: dict[str, str] = {}
    for parent in interface["extends"]:
        label = re.search(r"<'(\w+)'>", parent)
        fields.update(_ts_fields(ts, parent.split("<")[0]))
        if label:
            fields["object"] = f"'{label.group(1)}'"
    fields.update({key.rstrip("?"): value for key, value in interface["fields"].items()})
    return fields


def _go_fields(go: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in go.get(name, {}).items():
        if value == "embedded":
            fields.update(_go_fields(go, key.strip("<>")))
        else:
            fields[key] = value
    return fields


def kind_schema(kind: str, sources: dict[str, Any], recorded: Recorded) -> dict[str, Any]:
    """The closed object schema of one kind."""
    go_name, ts_name = KINDS[kind]
    ts = sources["typescript"]
    properties: dict[str, Property] = defaultdict(Property)
    for name, text in _go_fields(sources["go"], go_name).items():
        go_type(text, properties[name])
    for name, text in _ts_fields(ts, ts_name).items():
        ts_type(text, properties[name], ts["aliases"])
    for (of, name), values in recorded.values.items():
        if of == kind:
            _recorded_type(values, properties[name], NESTED.get((kind, name)))
    for (of, name), alias in EXTRA_ENUMS.items():
        if of == kind:
            properties[name].enum.update(ts["aliases"][alias])
    if kind == "Error":
        properties["code"].enum.update(ts["aliases"]["TErrorCode"], sources["recorded_error_codes"])
    if kind == "Event":
        properties["description"].enum.update(EVENT_TYPES)
        properties["result"].anything = True  # the object the event is about, checked as its kind
    schemas = {name: prop.schema() for name, prop in sorted(properties.items())}
    prefixes = {label: prefix for prefix, label in sources["id_prefixes"].items()}
    if kind not in UNLABELLED:
        schemas["object"] = {"const": kind}
        if "id" in schemas and kind in prefixes:
            schemas["id"] = {"type": "string", "pattern": rf"^{prefixes[kind]}_[0-9a-f]+$"}
    for name, label in FOREIGN_IDS.items():
        if name in schemas:
            schemas[name] = {**schemas[name], "pattern": rf"^{prefixes[label]}_[0-9a-f]+$"}
    seen = recorded.seen.get(kind, 0)
    required = sorted(name for name, n in recorded.present[kind].items() if seen and n == seen)
    return {
        "type": "object",
        "properties": schemas,
        "required": required,
        "additionalProperties": False,
    }


def generate() -> dict[str, Any]:
    """Every kind's schema, with where the facts came from."""
    sources = json.loads(SOURCES.read_text(encoding="utf-8"))
    examples = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    recorded = Recorded()
    for answer in examples["responses"]:
        recorded.walk(answer["body"].get("error"), "Error")
        if "error" not in answer["body"]:
            recorded.walk(answer["body"], None)
    recorded.walk(examples["webhook"]["body"], None)
    return {
        "source": sources["origin"],
        "$defs": {kind: kind_schema(kind, sources, recorded) for kind in KINDS},
    }


def _write(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    """`extract` from checkouts, or (by default) rebuild the schemas from the vendored facts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    pulling = commands.add_parser("extract", help="read EasyPost's repositories (git checkouts)")
    for name in ("go", "node", "python", "examples"):
        pulling.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "extract":
        extract(args.go, args.node, args.python, args.examples)
        print(f"wrote {SOURCES} and {EXAMPLES}")
    _write(OUTPUT, generate())
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
