"""tools.easypost_schema reads EasyPost's Go structs and TypeScript typings as they are written,
and turns what they say into the schema's types, nullability and enums."""

from __future__ import annotations

from tools.easypost_schema import Property, go_structs, go_type, ts_declarations, ts_type

GO = """
type Tracker struct {
\tID              string            `json:"id,omitempty" url:"id,omitempty"`
\t// A comment line is not a field.
\tWeight          float64           `json:"weight,omitempty" url:"weight,omitempty"`
\tTrackingDetails []*TrackingDetail `json:"tracking_details,omitempty" url:"tracking_details"`
\tStatusCode      int
}

type APIError struct {
\tLibraryError // subtype of LibraryError
\tCode string `json:"code,omitempty" url:"code,omitempty"`
}
"""
TS = """
export declare interface ITracker extends IObjectWithId<'Tracker'>, IDatedObject {
  status: ITrackerStatus;
  /**
   * Who signed for it
   */
  signed_by?: string | null;
  form_type:
    | 'cn22'
    | 'label_qr_code';
}

export declare type ITrackerStatus =
  | 'unknown'
  | 'delivered';
"""


def test_go_structs_read_tags_types_and_embedded_structs() -> None:
    structs = go_structs(GO)
    assert structs["Tracker"] == {
        "id": "string",
        "weight": "float64",
        "tracking_details": "[]*TrackingDetail",
    }
    assert structs["APIError"] == {"<LibraryError>": "embedded", "code": "string"}


def test_typescript_interfaces_and_aliases() -> None:
    interfaces, aliases = ts_declarations(TS)
    tracker = interfaces["ITracker"]
    assert tracker["extends"] == ["IObjectWithId<'Tracker'>", "IDatedObject"]
    assert tracker["fields"]["status"] == "ITrackerStatus"
    assert tracker["fields"]["signed_by?"] == "string | null"
    assert aliases["ITrackerStatus"] == ["unknown", "delivered"]

    status, signed, form = Property(), Property(), Property()
    ts_type("ITrackerStatus", status, aliases)
    ts_type("string | null", signed, aliases)
    ts_type(tracker["fields"]["form_type"], form, aliases)
    assert status.schema() == {"enum": ["delivered", "unknown"]}
    assert signed.schema() == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert form.schema() == {"enum": ["cn22", "label_qr_code"]}


def test_go_types_become_json_types() -> None:
    details, zone = Property(), Property()
    go_type("[]*TrackingDetail", details)
    assert details.schema() == {"type": "array", "items": {"$ref": "#/$defs/TrackingDetail"}}
    # Sources disagreeing (Go's integer, the typings' string): either is EasyPost's.
    go_type("int", zone)
    ts_type("string", zone, {})
    assert zone.schema() == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    # interface{} says nothing, so the other sources decide.
    untyped = Property()
    go_type("interface{}", untyped)
    assert untyped.schema() == {}
