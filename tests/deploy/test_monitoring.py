"""Monitoring an SRE deploys: the alert rules (promtool checks and unit-tests them), the Grafana
dashboard (validated against a schema of Grafana's dashboard model), the scrape objects, and
that every metric either of them reads is one the platform exports (docs/operations.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy import kustomize
from tools import monitoring

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "deploy" / "monitoring"
ALERTS = SOURCES / "alerts.yml"
ALERT_TESTS = SOURCES / "alerts.test.yml"
DASHBOARD = SOURCES / "dashboard.json"
OBJECTS = REPO / "deploy" / "kubernetes" / "monitoring"
BASE = REPO / "deploy" / "kubernetes" / "base"
OPERATIONS = REPO / "docs" / "operations.md"
KUBERNETES_VERSION = "1.30"
SEVERITIES = {"critical", "warning"}
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    """Debian's `prometheus` package provides it (CI installs it); $PROMTOOL overrides."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (apt-get install prometheus, or set PROMTOOL)")
    return found


def run_promtool(*args: str, cwd: Path = SOURCES) -> str:
    done = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[str]:
    """Every panel's PromQL, Grafana's variables replaced as Grafana would."""
    queries = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    variables = {"$__rate_interval": "2m", "$namespace": ".*"}
    for name, value in variables.items():
        queries = [q.replace(name, value) for q in queries]
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges and grouping
    clauses removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:])\d[\w.]*", " ", text)  # numbers and durations
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def documented_metrics() -> set[str]:
    """The metric names in the first column of docs/operations.md's "Metrics and alerts" table."""
    section = OPERATIONS.read_text(encoding="utf-8").split("## Metrics and alerts", 1)[1]
    table = section.split("\n### ", 1)[0]
    cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in cells for name in re.findall(r"`([a-z][a-z0-9_]*)", cell)}


def exported(name: str, documented: set[str]) -> bool:
    if name in documented:
        return True
    return any(name.endswith(s) and name.removesuffix(s) in documented for s in HISTOGRAM_SUFFIXES)


# --- alert rules -------------------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check() -> None:
    output = run_promtool("check", "rules", ALERTS.name)
    assert f"SUCCESS: {len(rules())} rules found" in output, output


def test_every_alert_fires_in_promtool_unit_tests() -> None:
    output = run_promtool("test", "rules", ALERT_TESTS.name)
    assert "SUCCESS" in output, output
    # Each alert has a case where it fires and one where it stays quiet.
    cases = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    names = {rule["alert"] for rule in rules()}
    assert firing == names, names ^ firing
    assert quiet == names, names ^ quiet


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(x[5m])"}]}]}
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run(
        [promtool(), "check", "rules", "broken.yml"], cwd=tmp_path, capture_output=True, check=False
    )
    assert done.returncode != 0


def test_every_alert_is_actionable() -> None:
    anchors = {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for rule in rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"], rule["alert"]
        assert notes["description"], rule["alert"]
        page, anchor = notes["runbook_url"].split("#")
        assert page == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


# --- dashboard --------------------------------------------------------------------------------

DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
TARGET = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
        "datasource": DATASOURCE,
    },
    "additionalProperties": False,
}
PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["row", "timeseries", "stat", "gauge", "table", "bargauge"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "gridPos": GRID,
        "datasource": DATASOURCE,
        "targets": {"type": "array", "items": TARGET, "minItems": 1},
        "fieldConfig": {
            "type": "object",
            "required": ["defaults", "overrides"],
            "properties": {"defaults": {"type": "object"}, "overrides": {"type": "array"}},
        },
        "options": {"type": "object"},
        "collapsed": {"type": "boolean"},
        "panels": {"type": "array", "maxItems": 0},
    },
    "additionalProperties": False,
    "if": {"properties": {"type": {"const": "row"}}},
    "then": {"not": {"required": ["targets"]}},
    "else": {"required": ["datasource", "targets", "fieldConfig", "options"]},
}
# The parts of Grafana's dashboard model (schemaVersion 39) this dashboard uses.
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time", "editable"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36, "maximum": 41},
        "version": {"type": "integer"},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "refresh": {"type": "string"},
        "timezone": {"type": "string"},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "panels": {"type": "array", "items": PANEL, "minItems": 1},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {"type": {"enum": ["datasource", "query", "custom"]}},
                    },
                }
            },
        },
        "annotations": {"type": "object"},
    },
}


def test_the_dashboard_fits_grafanas_model() -> None:
    model = dashboard()
    jsonschema.validate(model, DASHBOARD_SCHEMA)
    panels = model["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    variables = {v["name"] for v in model["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    for query in (t["expr"] for p in dashboard_panels() for t in p["targets"]):
        assert 'namespace=~"$namespace"' in query, query


def test_the_schema_refuses_a_broken_dashboard() -> None:
    model = dashboard()
    model["panels"][1]["gridPos"]["w"] = 30
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(model, DASHBOARD_SCHEMA)
    model = dashboard()
    del model["panels"][1]["targets"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(model, DASHBOARD_SCHEMA)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    recorded = [
        {"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(dashboard_queries())
    ]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]})
    )
    output = run_promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(recorded)} rules found" in output, output


# --- metric names ------------------------------------------------------------------------------


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (task_queue, le) (rate(a_bucket{x="y",le=~"1|2"}[5m])))'
        " / on (task_queue) group_left max without (pod) (b:c offset 5m) > 0.5 and absent(d)"
    )
    assert metric_names(expr) == {"a_bucket", "b:c", "d"}


# How the platform's code creates a metric, and the suffix Prometheus then shows it with.
CREATED = [
    (re.compile(r'create_(?:counter|gauge|gauge_float|histogram\w*)\(\s*"([a-z_]+)"'), ""),
    (re.compile(r'\bCounter\(\s*"([a-z_]+)"'), "_total"),
    (re.compile(r'\bHistogram\(\s*"([a-z_]+)"'), ""),
]
PACKAGES = ("kit", "domains", "activities", "workflows", "api", "workers")


def created_metrics() -> set[str]:
    """Every metric the platform's code creates, as scraped."""
    names = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for pattern, suffix in CREATED:
                names |= {name + suffix for name in pattern.findall(text)}
    return names


def test_every_metric_the_platform_creates_is_documented() -> None:
    created = created_metrics()
    assert {"checkout_starts_total", "api_requests_total", "checkouts_open"} <= created
    assert {"outbox_relay_listening", "payment_provider_calls", "consumer_rejected"} <= created
    missing = sorted(created - documented_metrics())
    assert not missing, f"created but not in docs/operations.md's table: {missing}"


def test_alerts_and_dashboard_read_only_exported_metrics() -> None:
    documented = documented_metrics()
    assert {"checkouts_open", "api_requests_total", "outbox_relay_listening"} <= documented
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    used |= {name for query in dashboard_queries() for name in metric_names(query)}
    unknown = sorted(name for name in used if not exported(name, documented))
    assert not unknown, f"not exported (or not in docs/operations.md): {unknown}"


# --- scrape objects -----------------------------------------------------------------------------

SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
ENDPOINT_FIELDS = {
    "port": {"type": "string"},
    "path": {"type": "string", "pattern": "^/"},
    "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
    "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+[smh]$"},
    "relabelings": {"type": "array"},
}
# The fields of the Prometheus Operator's CRDs (monitoring.coreos.com/v1) these objects use.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "PodMonitor": {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "properties": {
            "selector": SELECTOR,
            "podMetricsEndpoints": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "required": ["port"], "properties": ENDPOINT_FIELDS,
                          "additionalProperties": False},
            },
        },
        "additionalProperties": False,
    },
    "ServiceMonitor": {
        "type": "object",
        "required": ["selector", "endpoints"],
        "properties": {
            "selector": SELECTOR,
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "required": ["port"], "properties": ENDPOINT_FIELDS,
                          "additionalProperties": False},
            },
        },
        "additionalProperties": False,
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["groups"],
        "properties": {"groups": {"type": "array", "minItems": 1}},
        "additionalProperties": False,
    },
}  # fmt: skip


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_monitoring_objects_are_valid_and_current() -> None:
    assert monitoring.main(["--check"]) == 0, "run python -m tools.monitoring"
    objects = kustomize.render(OBJECTS)
    assert sorted(o["kind"] for o in objects) == [
        "ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor",
    ]  # fmt: skip
    for obj in objects:
        assert obj["metadata"]["namespace"] == "checkout"
        if kustomize.is_builtin(obj):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            jsonschema.validate(obj["spec"], CRD_SCHEMAS[obj["kind"]])
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    (board,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert json.loads(board["data"]["checkout-platform.json"]) == dashboard()
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_prometheus_scrapes_every_process() -> None:
    objects = kustomize.render(BASE)
    monitors = {o["kind"]: o["spec"] for o in kustomize.render(OBJECTS) if "spec" in o}
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    assert config["WORKER_METRICS_HOST"] == "0.0.0.0"
    port = int(config["WORKER_METRICS_PORT"])
    pods = [o for o in objects if o["kind"] == "Deployment"]
    scraped = {
        o["metadata"]["name"]
        for o in pods
        if matches(monitors["PodMonitor"]["selector"], o["spec"]["template"]["metadata"]["labels"])
    }
    processes = {
        o["metadata"]["name"]
        for o in pods
        if o["metadata"]["labels"]["app.kubernetes.io/component"] in {"worker", "relay"}
    }
    assert scraped == processes
    assert len(processes) == 10
    (endpoint,) = monitors["PodMonitor"]["podMetricsEndpoints"]
    for pod in pods:
        if pod["metadata"]["name"] in scraped:
            (container,) = pod["spec"]["template"]["spec"]["containers"]
            declared = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert declared.get(endpoint["port"]) == port, pod["metadata"]["name"]
    api_selector = monitors["ServiceMonitor"]["selector"]
    services = [
        o
        for o in objects
        if o["kind"] == "Service" and matches(api_selector, o["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in services] == ["checkout-api"]
    (api_endpoint,) = monitors["ServiceMonitor"]["endpoints"]
    assert api_endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}


def pod_meta(deployment: dict[str, Any], port: dict[str, Any]) -> dict[str, str]:
    """The discovery labels Prometheus's `role: pod` gives one container port of a pod."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    meta = {
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key): value
        for key, value in labels.items()
    }
    return {**meta, "__meta_kubernetes_pod_container_port_name": port.get("name", "")}


def kept(relabelings: list[dict[str, Any]], meta: dict[str, str]) -> bool:
    """Whether a target with these discovery labels survives the `keep` rules."""
    for rule in relabelings:
        if rule.get("action") == "keep":
            value = ";".join(meta.get(label, "") for label in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
    return True


def test_the_plain_scrape_config_finds_every_process() -> None:
    config = yaml.safe_load((SOURCES / "prometheus.yml").read_text(encoding="utf-8"))
    assert all((SOURCES / name).is_file() for name in config["rule_files"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    objects = kustomize.render(BASE)
    ports = [
        (o["metadata"]["name"], port)
        for o in objects
        if o["kind"] == "Deployment"
        for container in o["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", [])
        if kept(jobs["checkout-platform-workers"]["relabel_configs"], pod_meta(o, port))
    ]
    processes = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] in {"worker", "relay"}
    ]
    assert sorted(name for name, _ in ports) == sorted(processes)
    assert {port["containerPort"] for _, port in ports} == {9100}
    api = jobs["checkout-platform-api"]
    assert api["metrics_path"] == "/metrics/"
    keep = {r["source_labels"][0]: r["regex"] for r in api["relabel_configs"] if r.get("action")}
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert keep["__meta_kubernetes_service_name"] == service["metadata"]["name"]
    assert keep["__meta_kubernetes_endpoint_port_name"] in {
        p["name"] for p in service["spec"]["ports"]
    }


def test_every_metric_an_alert_reads_is_on_the_dashboard() -> None:
    alerting = {name for rule in rules() for name in metric_names(rule["expr"])}
    shown = {name for query in dashboard_queries() for name in metric_names(query)}
    assert alerting <= shown, alerting - shown
