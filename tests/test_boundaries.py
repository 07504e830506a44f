"""The layers' import rules (docs/architecture.md), checked on every module's imports.

Each rule is a function of (importing module, imported module) that returns a reason when the
import crosses a boundary. `test_rules_catch_a_crossing` feeds each rule one forbidden import so
that a rule that can never fire fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APPLICATION = ("kit", "domains", "activities", "workflows", "workers", "api", "sandbox", "devstack")
# First-party top-level packages (anything else is the standard library or a dependency).
FIRST_PARTY = {*APPLICATION, "db", "tools", "tests"}

Rule = Callable[[str, str], str | None]


def _parts(module: str) -> list[str]:
    return module.split(".")


def kit_is_the_ground_floor(importer: str, imported: str) -> str | None:
    """kit imports nothing of the platform above it."""
    top = _parts(imported)[0]
    if _parts(importer)[0] == "kit" and top in FIRST_PARTY and top != "kit":
        return "kit imports nothing above it"
    return None


def a_domain_is_alone(importer: str, imported: str) -> str | None:
    """A domain imports kit and itself: never another domain, never a layer above."""
    mine, theirs = _parts(importer), _parts(imported)
    if mine[0] != "domains" or theirs[0] not in FIRST_PARTY:
        return None
    if theirs[0] not in ("kit", "domains"):
        return "a domain imports only kit and itself"
    if theirs[0] == "domains" and len(theirs) > 1 and len(mine) > 1 and theirs[1] != mine[1]:
        return "a domain never imports another domain"
    return None


def workflows_see_only_contracts(importer: str, imported: str) -> str | None:
    """Workflows import contracts and payloads, never an implementation (SQLAlchemy, HTTP)."""
    top = _parts(imported)[0]
    if _parts(importer)[0] != "workflows" or top not in FIRST_PARTY:
        return None
    if top == "workflows" or imported == "kit.money" or _is_contract(imported):
        return None
    return "workflows import only contracts, payloads and statuses"


def activities_serve_the_workflow(importer: str, imported: str) -> str | None:
    """Activities import domains, kit and their contracts, never the workflows or the API."""
    top = _parts(imported)[0]
    if _parts(importer)[0] == "activities" and top in {"workflows", "api", "workers", "tools"}:
        return "activities never import the layers that call them"
    return None


def _is_contract(module: str) -> bool:
    """An activity contract or a domain's statuses: names and payloads, no implementation."""
    parts = _parts(module)
    if module == "activities.shared":
        return True
    return len(parts) == 3 and (parts[0], parts[2]) in {
        ("activities", "contract"),
        ("domains", "statuses"),
    }


def the_api_stays_out_of_tools_and_workers(importer: str, imported: str) -> str | None:
    """The API process loads neither the workers (every activity) nor the demo tools."""
    top = _parts(imported)[0]
    if _parts(importer)[0] != "api" or _is_contract(imported):
        return None
    if top in {"tools", "workers", "activities", "devstack"}:
        return "the API imports neither tools, workers, activities nor devstack"
    return None


def production_code_stays_out_of_devstack(importer: str, imported: str) -> str | None:
    """devstack (the local supervisor) is used by nobody in production code."""
    mine = _parts(importer)[0]
    if _parts(imported)[0] == "devstack" and mine in set(APPLICATION) - {"devstack"}:
        return "production code never imports the dev stack"
    return None


RULES: list[Rule] = [
    kit_is_the_ground_floor,
    a_domain_is_alone,
    workflows_see_only_contracts,
    activities_serve_the_workflow,
    the_api_stays_out_of_tools_and_workers,
    production_code_stays_out_of_devstack,
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> Iterator[str]:
    """Every absolute module a file imports (`from x import y`: x.y when y is a module, else x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if _is_module(submodule) else node.module


def crossings() -> list[str]:
    """Every import in the application code that breaks a rule."""
    found = []
    for package in APPLICATION:
        for path in sorted((REPO / package).rglob("*.py")):
            importer = _module_name(path)
            for imported in set(imports(path)):
                for rule in RULES:
                    reason = rule(importer, imported)
                    if reason:
                        found.append(f"{importer} -> {imported}: {reason}")
    return sorted(set(found))


def test_no_import_crosses_a_boundary() -> None:
    assert crossings() == []


@pytest.mark.parametrize(
    ("rule", "importer", "imported"),
    [
        (kit_is_the_ground_floor, "kit.stack", "api.app"),
        (a_domain_is_alone, "domains.orders.service", "domains.payments.models"),
        (a_domain_is_alone, "domains.orders.service", "activities.orders.contract"),
        (workflows_see_only_contracts, "workflows.checkout.workflow", "activities.cart.activities"),
        (workflows_see_only_contracts, "workflows.checkout.workflow", "domains.cart.service"),
        (activities_serve_the_workflow, "activities.cart.activities", "workflows.checkout.models"),
        (the_api_stays_out_of_tools_and_workers, "api.routers.health", "workers.bootstrap"),
        (the_api_stays_out_of_tools_and_workers, "api.services.checkouts", "tools.seed"),
        (
            the_api_stays_out_of_tools_and_workers,
            "api.routers.ops",
            "activities.payments.activities",
        ),
        (production_code_stays_out_of_devstack, "workers.bootstrap", "devstack.processes"),
    ],
)
def test_rules_catch_a_crossing(rule: Rule, importer: str, imported: str) -> None:
    assert rule(importer, imported) is not None


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("domains.orders.service", "kit.outbox"),
        ("domains.orders.service", "domains.orders.models"),
        ("workflows.checkout.workflow", "activities.cart.contract"),
        ("workflows.checkout.contract", "domains.checkout.statuses"),
        ("api.services.checkouts", "workflows.checkout.client"),
        ("api.services.webhooks", "activities.payments.contract"),
    ],
)
def test_rules_allow_what_the_layers_need(importer: str, imported: str) -> None:
    assert [rule.__name__ for rule in RULES if rule(importer, imported)] == []
