"""Rows past their retention, deleted in batches: the outbox's processed rows, the inboxes.

Each batch is its own short transaction (no long-held locks, no burst of WAL), and a pass ends at
the first batch that comes back short: at rest, a pass is one indexed statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Delete, Interval, Table, bindparam, delete, func, select, tuple_
from sqlalchemy.sql import Executable

from kit.db import DomainDatabase

BATCH = 1000


async def delete_in_batches(
    db: DomainDatabase, statement: Executable, params: Mapping[str, Any], batch: int = BATCH
) -> int:
    """Run a DELETE of at most `:batch` rows until it deletes fewer; how many rows went."""
    deleted = 0
    while True:
        async with db.begin() as session:
            result = await session.execute(statement, {**params, "batch": batch})
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch:
            return deleted


def older_than(table: Table, column: str) -> Delete:
    """DELETE of at most `:batch` rows of `table` whose `column` is older than `:retention`."""
    key = list(table.primary_key.columns)
    cutoff = func.now() - bindparam("retention", type_=Interval())
    doomed = select(*key).where(table.c[column] < cutoff).limit(bindparam("batch"))
    return delete(table).where(tuple_(*key).in_(doomed))


async def prune_older_than(
    db: DomainDatabase, table: Table, column: str, retention: timedelta, batch: int = BATCH
) -> int:
    """Delete the rows of `table` whose `column` is older than `retention`, in batches."""
    return await delete_in_batches(db, older_than(table, column), {"retention": retention}, batch)
