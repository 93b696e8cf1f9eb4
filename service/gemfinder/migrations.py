"""Versioned schema migrations of the store: an ordered list, applied at start in one transaction.

A database records the version of its schema (SQLite: `PRAGMA user_version`; 0 for a new file
and for stores written before versions were kept). Opening one applies every migration above
its version, in order, inside one write transaction together with the new version number: a
failed step rolls everything back and leaves the file as it was, and two processes opening the
same file at once do not both migrate it (the second waits for the lock, then finds nothing to
do). A database of a newer version than this code knows is refused, not guessed at.

To change the schema, append a Migration with the next number: never edit or reorder a released
one, and make each step work from the state every earlier version can leave (tests/service/
test_store_migrations.py opens a store of every earlier version). Steps are plain statements or
functions of the connection; what is SQLite's own (how to take the write lock, where the version
lives) is a `Dialect`, so a PostgreSQL store can run its own list through the same `migrate`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Step = str | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int  # the schema version after this migration
    summary: str  # what changes and why, one line
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Dialect:
    begin: str  # starts the transaction holding the write lock
    read_version: Callable[[Any], int]
    write_version: Callable[[Any, int], None]


SQLITE = Dialect(
    "BEGIN IMMEDIATE",
    lambda db: int(db.execute("PRAGMA user_version").fetchone()[0]),
    lambda db, version: db.execute(f"PRAGMA user_version = {int(version)}"),
)


class SchemaTooNew(sqlite3.DatabaseError):
    """The database was written by a newer gemfinder (its schema version is above ours)."""


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _drop_spec_hash(db: sqlite3.Connection) -> None:
    # Only databases written by the releases that kept a spec digest per search (schema 1 of
    # that time) have it; the digest is derived from the stored spec (search.spec.spec_digest).
    if _has_column(db, "searches", "spec_hash"):
        db.execute("ALTER TABLE searches DROP COLUMN spec_hash")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tables of searches, snapshots, pulls and the evaluation cache",
        # IF NOT EXISTS: a version-0 file may be new, or written by any release before
        # versions were kept, with some or all of these tables already there.
        (
            """CREATE TABLE IF NOT EXISTS searches (
                id TEXT PRIMARY KEY,
                request_id TEXT UNIQUE,
                state TEXT NOT NULL,
                spec TEXT NOT NULL,
                created REAL NOT NULL,
                updated REAL NOT NULL,
                progress TEXT,
                result TEXT,
                error TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS searches_created ON searches (created DESC, id DESC)",
            """CREATE TABLE IF NOT EXISTS snapshots (
                search_id TEXT PRIMARY KEY REFERENCES searches (id) ON DELETE CASCADE,
                data BLOB NOT NULL,
                updated REAL NOT NULL
            )""",
            # reward 0/1: a graded pull; -1 (store.SKIPPED): failed on every attempt, skipped.
            """CREATE TABLE IF NOT EXISTS pulls (
                search_id TEXT NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
                model INTEGER NOT NULL,
                item INTEGER NOT NULL,
                reward INTEGER NOT NULL,
                PRIMARY KEY (search_id, model, item)
            ) WITHOUT ROWID""",
            """CREATE TABLE IF NOT EXISTS evals (
                key TEXT PRIMARY KEY,
                reward INTEGER NOT NULL,
                created REAL NOT NULL
            )""",
        ),
    ),
    Migration(2, "drop searches.spec_hash, a digest derived from the spec", (_drop_spec_hash,)),
    Migration(
        3,
        "evaluation cache keyed by the endpoint that produced each answer; older rows dropped",
        # The keys written before named no endpoint, so an answer any caller's endpoint gave
        # for a model id was served to every search naming that model id (cache poisoning).
        # Which endpoint produced such a row cannot be proven (the key is a one-way hash, and
        # a search's pulls may themselves have been served from a foreign row), so none is
        # kept: each (model, item) is asked again once, on the endpoint a search names.
        ("DELETE FROM evals",),
    ),
)
LATEST = MIGRATIONS[-1].version


def migrate(
    db: Any, migrations: Sequence[Migration] = MIGRATIONS, dialect: Dialect = SQLITE
) -> tuple[int, int]:
    """Bring `db` (autocommit mode, no open transaction) to the last version of `migrations`;
    returns (version found, version now). Raises SchemaTooNew for a newer database."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, got {numbers}")
    latest = numbers[-1] if numbers else 0
    db.execute(dialect.begin)  # the write lock first: the version read below stays true
    try:
        found = dialect.read_version(db)
        if found > latest:
            raise SchemaTooNew(
                f"schema version {found} is newer than this gemfinder's {latest}; "
                "use a newer gemfinder or another database"
            )
        for migration in migrations[found:]:
            for step in migration.steps:
                if callable(step):
                    step(db)
                else:
                    db.execute(step)
        if found < latest:
            dialect.write_version(db, latest)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found, latest
