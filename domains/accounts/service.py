"""User accounts."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from domains.accounts.errors import EmailTaken
from domains.accounts.models import User
from domains.accounts.statuses import UserStatus
from kit.db import insert_if_absent
from kit.outbox import append_event


class UserRegistered(BaseModel):
    """`user.registered` (no personal data in the event: consumers look the user up)."""

    user_id: uuid.UUID


async def create_user(session: AsyncSession, email: str, phone: str | None) -> User:
    """A new active user; EmailTaken if the address (in any case) is registered."""
    user = await insert_if_absent(
        session,
        User,
        {
            "id": uuid.uuid4(),
            "email": email.strip().lower(),
            "phone": phone,
            "status": UserStatus.ACTIVE.value,
        },
        key=[User.email],
    )
    if user is None:
        raise EmailTaken("a user with this e-mail exists")
    await append_event(session, "user", user.id, "user.registered", UserRegistered(user_id=user.id))
    return user
