"""Workflow ids that name what a workflow is about: a fixed prefix, then that thing's UUID
(`return-<return_id>`)."""

from __future__ import annotations

import contextlib
import uuid


def id_after(prefix: str, workflow_id: str) -> uuid.UUID | None:
    """The UUID a workflow id names after `prefix`; None for an id without that prefix (another
    kind of workflow) or without a UUID after it."""
    if workflow_id.startswith(prefix):
        with contextlib.suppress(ValueError):
            return uuid.UUID(workflow_id.removeprefix(prefix))
    return None
