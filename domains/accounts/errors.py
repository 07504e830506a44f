"""Account failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class EmailTaken(Conflict):
    """Another user has this e-mail address."""

    code = "email_taken"


class UserNotFound(NotFound):
    """No such user."""

    code = "user_not_found"
