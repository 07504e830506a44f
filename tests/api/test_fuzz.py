"""Schemathesis over the API's own OpenAPI document, with a valid token: no 5xx, ever.

Runs the `st` CLI as a subprocess against the API served by the platform fixture (the same
command `just fuzz` runs against `just up`, with more examples).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest

from api.auth import issue_token
from tests.platform import Platform

pytestmark = pytest.mark.timeout(300)


async def test_no_server_errors(platform: Platform, work_dir: Path) -> None:
    st = shutil.which("st")
    assert st, "schemathesis is in the dev extra"
    token = issue_token(platform.settings, uuid.uuid4(), ["customer", "operator"])
    process = await asyncio.create_subprocess_exec(
        st,
        "run",
        f"{platform.api_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--generation-deterministic",
        "--request-timeout",
        "20",
        # /healthz answers 503 by design when a dependency is down; tested on its own.
        "--exclude-path",
        "/healthz",
        "--header",
        f"Authorization: Bearer {token}",
        # Its cache of found crashes goes to a throw-away directory, not the repository.
        cwd=str(work_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
