"""HTTP clients and tokens for API tests against the real API served by the platform fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from api.auth import issue_token
from tests.platform import Platform


@dataclass
class Caller:
    """A user with a token."""

    user_id: uuid.UUID
    headers: dict[str, str]


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running API."""
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=30) as client:
        yield client


def caller(platform: Platform, *scopes: str) -> Caller:
    """A fresh user id with a token carrying `scopes`."""
    user_id = uuid.uuid4()
    token = issue_token(platform.settings, user_id, scopes or ("customer",))
    return Caller(user_id, {"Authorization": f"Bearer {token}"})


@pytest.fixture
def operator(platform: Platform) -> Caller:
    """An operator."""
    return caller(platform, "operator")


@pytest.fixture
def alice(platform: Platform) -> Caller:
    """A customer."""
    return caller(platform, "customer")


@pytest.fixture
def bob(platform: Platform) -> Caller:
    """Another customer."""
    return caller(platform, "customer")
