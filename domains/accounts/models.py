"""Tables of the `accounts` database (seed: accounts_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.accounts.statuses import UserStatus
from kit.db import created_at_column, one_of, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the accounts database."""

    registry = domain_registry()


class User(Base):
    """A shopper or operator. Added: e-mail stored lower-case, so uniqueness ignores case."""

    __tablename__ = "users"
    __table_args__ = (
        one_of("status", [s.value for s in UserStatus]),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()


class UserAddress(Base):
    """A saved address of a user. Added: `created_at`."""

    __tablename__ = "user_addresses"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_at_column()
