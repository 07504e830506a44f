"""Users and, in development, tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import issue_token
from api.deps import PlatformDep
from api.errors import ApiError
from api.schemas import TokenIn, TokenOut, UserIn, UserOut
from domains.accounts import service

router = APIRouter(tags=["users"])


@router.post("/v1/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def create_user(body: UserIn, wired: PlatformDep) -> UserOut:
    """Register a user; 409 `email_taken` if the address is registered."""
    async with wired.databases["accounts"].begin() as session:
        user = await service.create_user(session, body.email, body.phone)
        return UserOut.model_validate(user)


@router.post("/v1/dev/tokens", response_model=TokenOut, tags=["development"])
async def mint_token(body: TokenIn, wired: PlatformDep) -> TokenOut:
    """An HS256 bearer token for any user and scopes; only with ENV=dev and no AUTH_ISSUER
    (with an issuer, tokens come from that provider and HS256 ones are refused)."""
    if wired.settings.env != "dev" or wired.settings.auth.issuer:
        raise ApiError(404, "not_found", "not found")
    token = issue_token(wired.settings, body.user_id, body.scopes)
    return TokenOut(access_token=token, expires_in=wired.settings.auth.token_ttl_s)
