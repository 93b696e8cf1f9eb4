"""Versioned schema migrations of the store: an ordered list, applied at start in one transaction.

A database records the version of its schema (SQLite: `PRAGMA user_version`; 0 for a new file
and for stores written before versions were kept). Opening one applies every migration above
its version, in order, inside one write transaction together with the new version number: a
failed step rolls everything back and leaves the file as it was, and two processes opening the
same file at once do not both migrate it (the second waits for the lock, then finds nothing to
do). A database of a newer version than this code knows is refused, not guessed at.

To change the schema, append a Migration with the next number to SHARED: never edit or reorder
a released one, and make each step work from the state every earlier version can leave
(tests/store/test_store_migrations.py opens a store of every earlier version). Steps are plain
statements or functions of the connection; what is SQLite's own (how to take the write lock,
where the version lives) is a `Dialect`.

PostgreSQL (gemfinder.pg_store) runs its own list, PG_MIGRATIONS, through the same `migrate`.
Version numbers name one logical schema on both: PostgreSQL support began at version 3, so its
list starts with a baseline 3 that creates version 3's tables in an empty database. Every change
of the schema from then on is written once, in SHARED: SQLite's spelling with a slot where
PostgreSQL spells it otherwise (`{text}`, `{real}`, `{boolean}`, ...: store_dialect.SQLITE_DDL
and PG_DDL), rendered into both lists (tests/store/test_pg_migrations.py applies each from an
empty database and from every step; tests/store/test_migrations_rendered.py holds the SQL each
database was given by the releases before the migrations were written once).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gemfinder.store_dialect import PG_DDL, SQLITE_DDL

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


class SchemaMismatch(sqlite3.DatabaseError):
    """The database's schema version is one no migration of this list starts from."""


class SchemaTooNew(SchemaMismatch):
    """The database was written by a newer gemfinder (its schema version is above ours)."""


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _drop_spec_hash(db: sqlite3.Connection) -> None:
    # Only databases written by the releases that kept a spec digest per search (schema 1 of
    # that time) have it; the digest is derived from the stored spec (search.spec.spec_digest).
    if _has_column(db, "searches", "spec_hash"):
        db.execute("ALTER TABLE searches DROP COLUMN spec_hash")


# SQLite's alone: versions 1-3 came before PostgreSQL support (its baseline is PG_BASELINE).
SQLITE_BEFORE_PG: tuple[Migration, ...] = (
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

# Versions 4 on, each written once for both databases (rendered below): SQLite's spelling, with
# slots for what PostgreSQL spells otherwise (a literal brace is doubled: str.format). A new
# migration is appended here.
SHARED: tuple[Migration, ...] = (
    Migration(
        4,
        "searches.owner and searches.lease_until: the replica running a search, until when",
        # NULL owner: free to claim (searches written before leases resume at once). PostgreSQL
        # counts lease times on the database's clock (gemfinder.pg_store), so that replicas'
        # clocks do not matter.
        (
            "ALTER TABLE searches ADD COLUMN owner {text}",
            "ALTER TABLE searches ADD COLUMN lease_until {real}",
        ),
    ),
    Migration(
        5,
        "samples log (gemfinder.samples) and searches.provenance: what each graded query was "
        "asked and answered, and what software graded it",
        # Searches stored before have no samples and a NULL provenance; their export says so.
        (
            # In SQLite a rowid table, not WITHOUT ROWID: rows hold up to 16 KiB of text (hence
            # {big_row_key}: UNIQUE there, PRIMARY KEY in PostgreSQL).
            """CREATE TABLE samples (
                search_id {text} NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
                model {integer} NOT NULL,
                item {integer} NOT NULL,
                key {text} NOT NULL,
                prompt_sha256 {text} NOT NULL,
                reward {smallint} NOT NULL,
                cached {boolean} NOT NULL,
                gem_check {boolean} NOT NULL,
                response {text},
                extracted {text},
                response_bytes {integer},
                extracted_bytes {integer},
                created {real} NOT NULL,
                {big_row_key} (search_id, model, item)
            )""",
            # A cached sample's original: the answer the evaluation cache holds under its key.
            "CREATE INDEX samples_originals ON samples (key) WHERE {not:cached}",
            "ALTER TABLE searches ADD COLUMN provenance {text}",
        ),
    ),
    Migration(
        6,
        "no change: reserved while the incremental search was built, which needed none",
        (),
    ),
    Migration(
        7,
        "events: each search's progress events in order, for Watch on any replica and resuming",
        # Written by the search's owner (fenced by its lease), read by every replica's
        # watchers; seq counts from 1 per search. Searches that ended before this version get
        # their FINISHED event, so a watch of any ended search ends the same way.
        (
            """CREATE TABLE events (
                search_id {text} NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
                seq {bigint} NOT NULL,
                type {text} NOT NULL,
                state {text} NOT NULL,
                progress {text},
                created {real} NOT NULL,
                PRIMARY KEY (search_id, seq)
            ){without_rowid}""",
            "INSERT INTO events (search_id, seq, type, state, progress, created)"
            " SELECT id, 1, 'finished', state, progress, updated FROM searches"
            " WHERE state IN ('succeeded', 'failed', 'cancelled')",
        ),
    ),
    Migration(
        8,
        "searches.cancel_requested: CancelSearch on any replica; ended searches' PROGRESS events "
        "pruned to their last",
        # When a cancel was asked for (seconds since the epoch, the database's clock as lease
        # times), NULL if never: the owner reads it at each lease renewal and cancels
        # (gemfinder.search.manager). Ended searches keep their round events, their last
        # PROGRESS and FINISHED, as searches ending from now on do (store.PRUNE_EVENTS).
        (
            "ALTER TABLE searches ADD COLUMN cancel_requested {real}",
            "DELETE FROM events WHERE type = 'progress' AND search_id IN (SELECT id FROM searches"
            " WHERE state IN ('succeeded', 'failed', 'cancelled')) AND seq < (SELECT MAX(e.seq)"
            " FROM events e WHERE e.search_id = events.search_id AND e.type = 'progress')",
        ),
    ),
    Migration(
        9,
        "serving_ledgers: a resumed search continues its serving-cost accounting",
        # One row per search and endpoint: JSON of gemfinder.cost.SlotLedger.state (what the
        # endpoint holds, GPU-seconds spent), written by the running search for the endpoints
        # a batch of answers changed (search.serving_cost); none for searches stored before.
        (
            """CREATE TABLE serving_ledgers (
                search_id {text} NOT NULL,
                endpoint {text} NOT NULL,
                state {text} NOT NULL,
                PRIMARY KEY (search_id, endpoint)
            ){without_rowid}""",
        ),
    ),
    Migration(
        10,
        "lora_leases: adapters registered on demand, shared by the replicas of one store",
        # One row per (endpoint, adapter, replica using it): the adapter counts once in the
        # endpoint's max_cpu_loras whoever uses it; a row whose lease_until (the database's
        # clock, as the searches' leases) passed is a dead or stalled replica's
        # (gemfinder.lora_leases).
        (
            """CREATE TABLE lora_leases (
                endpoint {text} NOT NULL,
                adapter {text} NOT NULL,
                replica {text} NOT NULL,
                state {text} NOT NULL,
                lease_until {real} NOT NULL,
                PRIMARY KEY (endpoint, adapter, replica)
            ){without_rowid}""",
        ),
    ),
)


def rendered(migrations: Sequence[Migration], ddl: dict[str, Any]) -> tuple[Migration, ...]:
    """`migrations` in one database's spelling: each statement's slots filled from `ddl`."""
    return tuple(
        Migration(
            m.version,
            m.summary,
            tuple(step if callable(step) else step.format(**ddl) for step in m.steps),
        )
        for m in migrations
    )


MIGRATIONS = SQLITE_BEFORE_PG + rendered(SHARED, SQLITE_DDL)

LATEST = MIGRATIONS[-1].version

# PostgreSQL: one connection in autocommit mode; the schema's version is the one row of
# gemfinder_schema, and a transaction-scoped advisory lock serialises replicas starting at once
# (a plain table lock cannot: the table may not exist yet).
PG_LOCK_KEY = 0x67656D66  # "gemf": any constant shared by every gemfinder


def _pg_version(db: Any) -> int:
    if db.execute("SELECT to_regclass('gemfinder_schema')").fetchone()[0] is None:
        return 0  # an empty database, or one that gemfinder never wrote
    return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM gemfinder_schema").fetchone()[0])


PG = Dialect(
    f"BEGIN; SELECT pg_advisory_xact_lock({PG_LOCK_KEY})",
    _pg_version,
    lambda db, version: db.execute(
        "CREATE TABLE IF NOT EXISTS gemfinder_schema (version integer NOT NULL);"
        f" DELETE FROM gemfinder_schema; INSERT INTO gemfinder_schema VALUES ({int(version)})"
    ),
)


# PostgreSQL's alone: its baseline, version 3's tables in an empty database (its support began
# there).
PG_BASELINE: tuple[Migration, ...] = (
    Migration(
        3,
        "baseline: the tables of schema version 3 (searches, snapshots, pulls, evaluation cache)",
        (
            """CREATE TABLE searches (
                id text PRIMARY KEY,
                request_id text UNIQUE,
                state text NOT NULL,
                spec text NOT NULL,
                created double precision NOT NULL,
                updated double precision NOT NULL,
                progress text,
                result text,
                error text
            )""",
            "CREATE INDEX searches_created ON searches (created DESC, id DESC)",
            # Resume at start reads the unfinished searches: a partial index keeps that cheap.
            "CREATE INDEX searches_unfinished ON searches (created)"
            " WHERE state IN ('pending', 'running')",
            """CREATE TABLE snapshots (
                search_id text PRIMARY KEY REFERENCES searches (id) ON DELETE CASCADE,
                data bytea NOT NULL,
                updated double precision NOT NULL
            )""",
            """CREATE TABLE pulls (
                search_id text NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
                model integer NOT NULL,
                item integer NOT NULL,
                reward smallint NOT NULL,
                PRIMARY KEY (search_id, model, item)
            )""",
            """CREATE TABLE evals (
                key text PRIMARY KEY,
                reward smallint NOT NULL,
                created double precision NOT NULL
            )""",
        ),
    ),
)
PG_MIGRATIONS = PG_BASELINE + rendered(SHARED, PG_DDL)


def migrate(
    db: Any, migrations: Sequence[Migration] = MIGRATIONS, dialect: Dialect = SQLITE
) -> tuple[int, int]:
    """Bring `db` (autocommit mode, no open transaction) to the last version of `migrations`;
    returns (version found, version now). Raises SchemaTooNew for a newer database.

    A list may start above 1 with a baseline that builds its version from an empty database
    (version 0); a database below the baseline but not empty is then refused (SchemaMismatch)."""
    numbers = [m.version for m in migrations]
    first = numbers[0] if numbers else 1
    if first < 1 or numbers != list(range(first, first + len(numbers))):
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
        if 0 < found < first:
            raise SchemaMismatch(
                f"schema version {found} predates version {first}, where this backend's "
                "migrations start"
            )
        for migration in migrations[max(found - first + 1, 0) :]:
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
