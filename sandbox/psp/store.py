"""SQLite state of the sandbox: one connection, one thread, writes serialized, WAL journal."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kit.logging import get_logger
from sandbox.psp.tax import SCHEMA as TAX_SCHEMA

log = get_logger(__name__)

T = TypeVar("T")

# A template because a file from before Stripe's declined state (`failed`, which Stripe does not
# have) copies its intents into a table of this shape.
INTENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id TEXT PRIMARY KEY,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (
        'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing',
        'requires_capture', 'succeeded', 'canceled'
    )),
    amount_capturable INTEGER NOT NULL DEFAULT 0,
    amount_received INTEGER NOT NULL DEFAULT 0,
    amount_refunded INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded <= amount_received),
    metadata TEXT NOT NULL,
    checkout_id TEXT,
    next_action_url TEXT,
    last_error_code TEXT,
    last_error_message TEXT,
    authorized INTEGER NOT NULL DEFAULT 0,
    due_at REAL,
    created INTEGER NOT NULL
)
"""
_INTENT_TAIL = (
    " amount_capturable, amount_received, amount_refunded, metadata, checkout_id,"
    " next_action_url, last_error_code, last_error_message, authorized, due_at, created"
)
INTENT_COLUMNS = "id, amount, currency, token, status," + _INTENT_TAIL
INTENT_SOURCE = (
    "id, amount, currency, token,"
    " CASE status WHEN 'failed' THEN 'requires_payment_method' ELSE status END," + _INTENT_TAIL
)

SCHEMA = (
    INTENTS_TABLE.format(name="payment_intents")
    + """;

CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL REFERENCES payment_intents (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    reason TEXT,
    metadata TEXT NOT NULL,
    created INTEGER NOT NULL
);

-- A dispute is written at the capture and opened (charge.dispute.created) when due_at comes.
CREATE TABLE IF NOT EXISTS disputes (
    id TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL REFERENCES payment_intents (id),
    charge TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('needs_response', 'under_review', 'won', 'lost')),
    evidence TEXT NOT NULL DEFAULT '{}',
    submission_count INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    due_at REAL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS disputes_due_at ON disputes (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS flaky_calls (
    scope TEXT PRIMARY KEY,
    calls INTEGER NOT NULL
);

-- Also `target` and `shipment`: see ADDED_COLUMNS.
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payment_intent TEXT,
    created INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS events_pending ON events (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS events_payment_intent ON events (payment_intent);
"""
    + ";"
    + TAX_SCHEMA
)

# Columns added after the table was first released. Every file, new or old, gets them here by
# ALTER TABLE, so each column is defined once.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "payment_intents": {"canceled_at": "INTEGER"},
    "refunds": {
        "status": "TEXT NOT NULL DEFAULT 'succeeded'"
        " CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled'))",
        "failure_reason": "TEXT",
        # When a pending refund fails (pm_card_refundFail); NULL once settled.
        "due_at": "REAL",
    },
    "events": {
        # Whose endpoint the event goes to; each target has its own delivery loop.
        "target": "TEXT NOT NULL DEFAULT 'payments' CHECK (target IN ('payments', 'carrier'))",
        "shipment": "TEXT",
    },
}

# Indexes on columns that an older file only has after _migrate (and on a rebuilt table).
LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS payment_intents_checkout_id ON payment_intents (checkout_id);
CREATE INDEX IF NOT EXISTS payment_intents_due_at
    ON payment_intents (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_shipment ON events (shipment) WHERE shipment IS NOT NULL;
CREATE INDEX IF NOT EXISTS refunds_due_at ON refunds (due_at) WHERE due_at IS NOT NULL;
"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    # Table names come from this module only, never from a request.
    return {str(row["name"]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _rebuild_intents(conn: sqlite3.Connection) -> None:
    """Copy the intents of a file from before Stripe's declined state into the current table: a
    declined intent (`failed` then) is `requires_payment_method`, as at Stripe."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'payment_intents'"
    ).fetchone()
    if "requires_payment_method" in row["sql"]:
        return
    conn.execute(INTENTS_TABLE.format(name="payment_intents_migrated"))
    conn.execute(
        f"INSERT INTO payment_intents_migrated ({INTENT_COLUMNS}) SELECT {INTENT_SOURCE}"
        " FROM payment_intents"
    )
    conn.execute("DROP TABLE payment_intents")
    conn.execute("ALTER TABLE payment_intents_migrated RENAME TO payment_intents")
    log.info("sandbox.store.table_rebuilt", table="payment_intents")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older sandbox to the current schema; a no-op once done.

    Runs with foreign keys off (a rebuilt table is swapped under the rows naming it, as SQLite's
    ALTER TABLE procedure asks) and checks them all before it commits.
    """
    _rebuild_intents(conn)
    for table, columns in ADDED_COLUMNS.items():
        present = _columns(conn, table)
        for column, definition in columns.items():
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                log.info("sandbox.store.column_added", table=table, column=column)
    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the sandbox store has rows naming missing rows: {broken[:5]}")


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class Store:
    """The sandbox's SQLite database.

    Every statement runs on one dedicated thread, so the event loop never waits on the disk and the
    single connection is never used by two threads, even when an awaiting request is cancelled
    halfway (the job then finishes on its own and the next one queues behind it). Write
    transactions additionally take an asyncio.Lock so that at most one is queued at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="psp-sqlite")
        self._write_lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the file and schema if needed."""
        await self._submit(self._connect)
        log.info("sandbox.store.opened", path=str(self.path))

    async def close(self) -> None:
        """Close the connection after every queued job has run."""
        await self._submit(self._disconnect)
        self._executor.shutdown(wait=True)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction: all of its writes commit, or none do."""
        async with self._write_lock:
            return await self._submit(lambda: _in_transaction(self._connection(), fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only `fn` on the connection."""
        return await self._submit(lambda: fn(self._connection()))

    async def _submit(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the sandbox store is not open")
        return self._conn

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT, see
        # _in_transaction).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed effect (an authorization, a refund) must survive a crash of the host,
        # because its idempotency record promises the client it happened.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        # One transaction: a crash halfway leaves the old schema, which the next start migrates.
        # Foreign keys are switched on after it (a pragma that cannot change inside one).
        conn.execute("PRAGMA foreign_keys=OFF")
        _in_transaction(conn, _migrate)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(LATE_INDEXES)
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
