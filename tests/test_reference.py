"""The reference documentation agrees with the code: error codes, settings, state diagrams, and the
README's first commands."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import pytest

from api.app import create_app
from domains.checkout.statuses import CheckoutStatus, StepName
from domains.orders.service import ALLOWED
from domains.orders.statuses import OrderStatus
from domains.payments.statuses import PaymentStatus
from kit.settings import DOMAINS, Settings
from tools import api_reference, config_reference, error_codes, generated

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


def test_the_error_table_lists_exactly_the_codes_the_platform_answers() -> None:
    codes = error_codes.collect()
    rows = error_codes.table(error_codes.ERRORS_REFERENCE.read_text())
    problems = error_codes.differences(codes, rows)
    assert not problems, (
        "docs/reference/errors.md disagrees with the code (python -m tools.error_codes prints "
        "draft rows):\n" + "\n".join(problems)
    )


def test_the_error_collector_sees_each_kind_of_source() -> None:
    codes = error_codes.collect()
    # A typed error with its class's status, an answer spelled out in api/, a framework error
    # from the status mapping, and a checkout-only failure code.
    assert codes["cart_locked"].statuses == {409}
    assert codes["rate_limited"].statuses == {429}
    assert codes["method_not_allowed"].statuses == {405}
    assert codes["payment_timeout"].statuses == set()
    assert codes["not_found"].statuses == {404}


def test_the_error_table_check_names_missing_stale_and_wrong_status_rows() -> None:
    codes = {
        "kept": error_codes.Code("kept", {409}),
        "added": error_codes.Code("added", {422}, {"domains.x.errors.Added"}),
    }
    text = "| `kept` | 404 | moved | no |\n| `gone` | 410 | removed | no |\n"
    problems = error_codes.differences(codes, error_codes.table(text))
    assert problems == [
        "missing: `added` (422; from domains.x.errors.Added)",
        "stale: `gone` (line 2) is in no error class or answer",
        "status: `kept` (line 1) says [404], the code answers [409]",
    ]


@pytest.mark.parametrize(
    ("page", "render", "module"),
    [
        ("configuration.md", config_reference.render, "tools.config_reference"),
        ("api.md", api_reference.render, "tools.api_reference"),
    ],
)
def test_the_generated_references_are_current(
    page: str, render: Callable[[], str], module: str
) -> None:
    assert generated.out_of_date(REFERENCE / page, render, module) is None


def test_every_setting_has_a_description() -> None:
    assert config_reference.undocumented() == [], (
        "give these settings a docstring under their field (kit/settings.py, sandbox/settings.py)"
    )


def test_the_configuration_reference_names_the_odd_variables() -> None:
    text = (REFERENCE / "configuration.md").read_text()
    for name in ("`DB_POOL_SIZE`", "`<DOMAIN>_DATABASE_URL`", "`SANDBOX_WEBHOOK_URL`", "`ENV`"):
        assert f"| {name} |" in text
    assert "`DATABASE_POOL_SIZE`" not in text


def test_the_api_reference_says_who_may_call_each_route() -> None:
    lines = api_reference.render().splitlines()
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| ") and "`/" in line}
    assert "| operator |" in rows["`/v1/ops/checkouts/stuck`"]
    assert "| customer |" in rows["`/v1/carts`"]
    assert "| signature |" in rows["`/v1/webhooks/payments/{provider}`"]


def test_a_route_that_reads_a_token_is_never_listed_as_open() -> None:
    secured = {
        (method.upper(), path)
        for path, operations in create_app().openapi()["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    }
    open_routes = {
        (method, route.path)
        for route in api_reference.routes()
        for method in route.methods or ()
        if api_reference.caller(route) in ("no token", "signature")
    }
    assert secured, "the OpenAPI document marks no route as needing a bearer token"
    assert not secured & open_routes


# Pages that name settings only as they are (docs/deployment.md also names proposed ones).
SETTINGS_PAGES = ("README.md", "docs/operations.md", "docs/troubleshooting.md", "docs/reference")


def test_the_docs_name_only_settings_that_exist() -> None:
    known = {v for _, v, _ in config_reference.variables()}
    known |= {v for v, _ in config_reference.sandbox_variables()}
    known |= {f"{d.upper()}_DATABASE_URL" for d in DOMAINS}
    prefixes = tuple({f"{group.upper()}_" for group in Settings.model_fields} | {"DB_", "SANDBOX_"})
    pages = [p for name in SETTINGS_PAGES for p in sorted((ROOT / name).glob("**/*.md"))]
    pages += [ROOT / name for name in SETTINGS_PAGES if name.endswith(".md")]
    unknown = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages
        for name in re.findall(r"`([A-Z][A-Z0-9_]*_[A-Z0-9_]+)(?:=[^`]*)?`", page.read_text())
        if name.startswith(prefixes) and name not in known
    }
    assert not unknown, sorted(unknown)


def _diagrams() -> dict[str, str]:
    """The Mermaid blocks of states.md by their section title."""
    text = (REFERENCE / "states.md").read_text()
    found: dict[str, str] = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        block = re.search(r"```mermaid\n(.*?)```", body, re.DOTALL)
        if block:
            found[title.strip()] = block.group(1)
    return found


@pytest.mark.parametrize(
    ("title", "enum"),
    [
        ("Checkout status", CheckoutStatus),
        ("Checkout steps", StepName),
        ("Order", OrderStatus),
        ("Payment", PaymentStatus),
    ],
)
def test_every_status_is_in_its_diagram(title: str, enum: type[StrEnum]) -> None:
    diagram = _diagrams()[title]
    missing = [s.value for s in enum if not re.search(rf"\b{s.value}\b", diagram)]
    assert not missing, f"states.md, {title}: not in the diagram: {missing}"


def test_the_order_diagram_has_exactly_the_allowed_transitions() -> None:
    drawn = set(re.findall(r"^\s*([a-z_]+) --> ([a-z_]+)", _diagrams()["Order"], re.MULTILINE))
    allowed = {(a.value, b.value) for a, targets in ALLOWED.items() for b in targets}
    assert drawn == allowed, {"drawn only": drawn - allowed, "allowed only": allowed - drawn}


def test_the_readme_starts_in_a_virtualenv_and_ci_runs_its_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert first_block is not None
    up, test = first_block.group(1).strip().splitlines()[:2]
    for command, ends in ((up, "just up"), (test, "just test")):
        steps = [s.strip() for s in command.split("#")[0].split("&&")]
        assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"], command
        assert steps[-1] == ends, command
    assert "\njust test\n" in (ROOT / ".ci" / "run").read_text()


def test_relative_links_in_the_docs_lead_somewhere() -> None:
    broken = []
    for page in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


# Documents a user of the project does not have: the outside contract, numbered house rules, the
# shared folder beside the repository, sections of an unnamed document (a section of a public RFC
# is fine). Spelled in pieces so this file passes too.
OUTSIDE_DOCUMENTS = re.compile(
    "|".join(
        [
            "CONT" + "RACT",
            "house rule [0-9]",
            r"\.\./sha" + "red",
            r"(?<!RFC \d{4} )(?<!RFC \d{3} )\u00a7 ?[0-9]",
        ]
    )
)


def test_no_file_cites_a_document_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    cites = []
    for name in filter(None, tracked.split("\0")):
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".sqlite"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_DOCUMENTS.search(line):
                cites.append(f"{name}:{number}: {line.strip()}")
    assert not cites, "say it in the project's own words:\n" + "\n".join(cites)
