"""The Dockerfile, read (this machine builds no image): pinned base, non-root, no dev extra, and
an image holding everything its processes import and nothing they do not."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
# What runs in the cluster: the API, the workers and relays, the migrations.
ENTRY_PACKAGES = ("api", "workers", "db")
FIRST_PARTY = {
    "kit",
    "domains",
    "activities",
    "workflows",
    "workers",
    "api",
    "sandbox",
    "db",
    "tools",
    "devstack",
    "tests",
}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def copied_sources() -> list[str]:
    """The build-context paths the runtime stage copies (COPY without --from)."""
    sources = []
    stage = ""
    for keyword, rest in instructions():
        if keyword == "FROM":
            stage = rest.split()[-1]
        elif keyword == "COPY" and stage == "runtime" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    return sources


def test_base_image_is_pinned_and_the_runtime_stage_runs_unprivileged() -> None:
    steps = instructions()
    (default,) = [rest for keyword, rest in steps if keyword == "ARG" and "PYTHON_IMAGE" in rest]
    image = default.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image
    assert "@sha256:<digest>" in DOCKERFILE.read_text(encoding="utf-8"), "digest pinning documented"
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users == ["10001:10001"], "the last stage switches to the manifests' runAsUser"
    last_user = max(i for i, (keyword, _) in enumerate(steps) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in steps[last_user:]), "nothing runs as root after"
    environment = " ".join(rest for keyword, rest in steps if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment


def test_no_dev_extra_and_no_secret_in_the_image() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "[dev]" not in text
    assert ".[dev" not in text
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|KEY|PASSWORD|TOKEN)\w*=", rest, re.IGNORECASE), rest


def test_the_image_holds_what_its_processes_import() -> None:
    sources = copied_sources()
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path"
    packages = {s for s in sources if (REPO / s / "__init__.py").is_file()}
    assert set(ENTRY_PACKAGES) <= packages
    assert "alembic.ini" in sources
    assert "deploy/probes/worker_probe.py" in sources
    # Every first-party import of every copied module stays inside the image (lazy imports too).
    missing = set()
    for package in packages:
        for module in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in FIRST_PARTY and top not in packages:
                        missing.add(f"{module.relative_to(REPO)} imports {name}")
    assert not missing, sorted(missing)


@pytest.mark.parametrize(
    "path", [".venv/bin/python", ".data/postgres/x", ".git/HEAD", "x/__pycache__/y.pyc", ".env"]
)
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(candidate: str) -> bool:
        parts = candidate.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], pattern.removeprefix("**/"))
            for pattern in patterns
            for prefix in prefixes
        )

    assert ignored(path)
    for source in copied_sources():
        assert not ignored(source), f"{source} is copied but ignored"
