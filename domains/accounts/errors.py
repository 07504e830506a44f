"""Account failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class EmailTaken(Conflict, code="email_taken"):
    """Another user has this e-mail address."""


class UserNotFound(NotFound, code="user_not_found"):
    """No such user."""
