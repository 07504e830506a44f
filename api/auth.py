"""Bearer JWTs (HS256 with AUTH_JWT_SECRET): claims `sub`, `scopes`, `exp`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from kit.settings import Settings

ALGORITHM = "HS256"
SCOPES = frozenset({"customer", "operator"})


class InvalidToken(Exception):
    """The token is missing, malformed, expired or not ours."""


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user_id: uuid.UUID
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        """Operators see every customer's objects."""
        return "operator" in self.scopes

    def owner_filter(self) -> uuid.UUID | None:
        """The user id to restrict reads to, or None for an operator."""
        return None if self.is_operator else self.user_id


def issue_token(settings: Settings, user_id: uuid.UUID, scopes: Iterable[str]) -> str:
    """A signed token for `user_id` with `scopes`, valid for AUTH_TOKEN_TTL_S."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "scopes": sorted(set(scopes)),
        "iat": now,
        "exp": now + settings.auth.token_ttl_s,
    }
    return jwt.encode(claims, settings.auth.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal of a valid token; InvalidToken otherwise (algorithm pinned, exp required)."""
    try:
        claims = jwt.decode(
            token,
            settings.auth.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
        user_id = uuid.UUID(str(claims["sub"]))
        scopes = claims.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise InvalidToken("scopes must be a list of strings")
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(user_id=user_id, scopes=frozenset(scopes) & SCOPES)
