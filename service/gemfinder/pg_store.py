"""PostgreSQL persistence: gemfinder.store's store (every query, in the PostgreSQL dialect of
gemfinder.store_dialect) run on a pool of connections, its writes queued.

Chosen by a `postgresql://` (or `postgres://`) URL in --db / GEMFINDER_DB. The contract is SQLite's:
synchronous methods, called from the event loop thread (the heavy reads from a worker thread,
through SqlStore.off_loop: the pool and the write queue are thread-safe). A round trip to a server
costs more than a SQLite call, so writes are handed to one writer thread (gemfinder.store_writer: in
order, but graded answers merged and first, and a search waits once too many are unwritten, so a
kill -9 loses few; a failure raised by the search's next call) and return; the runner's reads of a
search (snapshot, pulls) first wait for the writes before them. Reads that serve RPCs (get_search,
find_request, the events log) and the evaluation-cache lookup `cached_many` (one round trip on the
loop per batch of pulls) read what is committed: waiting for every search's queued writes held a
busy replica's loop for seconds (a lookup that misses a write still queued costs at most a query
asked twice). Creating a search is not queued either: nothing of a new search can be before it. Keep
the database close: same host or zone. Connections come from a psycopg_pool pool, which replaces a
connection the server dropped; a call that finds its connection dropped is run once more on a fresh
one, after the pool has tested its idle connections (every write here is idempotent: upserts, or an
insert of a new id that ignores its own earlier attempt). A server that stays unreachable, or a pool
with no free connection within `timeout`, is StoreUnavailable (gRPC UNAVAILABLE), naming the server
without its password.

Durability matches the SQLite store's (WAL, synchronous=NORMAL: a commit survives a killed
gemfinder, not a lost machine): the session runs with synchronous_commit off, so the hot path
(answers, snapshots, progress) never waits for a disk flush, while creating a search and
ending one commit synchronously (a request id must not be forgotten once acknowledged).

The schema is created and upgraded on open by gemfinder.migrations (PG_MIGRATIONS), under an
advisory lock, so replicas starting together migrate once.

Leases (see gemfinder.store) are timed by the database's clock (the dialect's `now`), so
replicas' clocks do not matter; claims, renewals and releases commit synchronously. A fenced
write that finds the search owned by another replica fails on the writer thread with LeaseLost,
which the search's next call raises (and its writes queued behind are dropped, as for any failed
write).
The fenced snapshot locks the search's row (FOR SHARE), so it lands either before a takeover's
claim commits (and the new owner loads it) or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from gemfinder.errors import UserError
from gemfinder.migrations import PG, PG_MIGRATIONS, SchemaMismatch, migrate
from gemfinder.store import SqlStore, apply
from gemfinder.store_dialect import postgres
from gemfinder.store_writer import WriteBehind

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 4
POOL_TIMEOUT_S = 5.0
# The advisory locks of `locked` (two int4 keys: this class, the key's hash), apart from the
# migrations' one bigint key (gemfinder.migrations.PG_LOCK_KEY, class 0 in this form).
LOCK_CLASS = 0x4C4F5241  # "LORA"


class StoreUnavailable(Exception):
    """The database cannot be reached (or has no free connection): retry later."""

    kind = "unavailable"  # gRPC UNAVAILABLE (server.errors)


def describe(params: dict[str, Any]) -> str:
    """The server as a URL without its password, for errors and logs."""
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def _password(url: str) -> str | None:
    """The password as written in the URL (userinfo or ?password=), to scrub from messages."""
    match = re.match(r"[a-z]+://[^:@/?#]*:([^@/?#]*)@", url)
    found = re.search(r"[?&]password=([^&#]*)", url)
    return (match.group(1) if match else None) or (found.group(1) if found else None)


class PgStore(SqlStore):
    """The store (gemfinder.store.SqlStore) on PostgreSQL: pooled connections, writes queued."""

    sql = postgres()
    writes_behind = True

    def __init__(
        self,
        url: str,
        option: str = "--db",
        *,
        pool_size: int = POOL_SIZE,
        timeout: float = POOL_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.option = option
        self._secrets = [s for s in (_password(url),) if s]
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as err:
            raise UserError(option, f"not a valid PostgreSQL URL: {self._clean(err)}") from None
        self._secrets += [params["password"]] if params.get("password") else []
        self.where = describe(params)
        self._timeout = timeout
        kwargs = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "gemfinder",
            "options": "-c synchronous_commit=off",
        }
        try:  # one connection of our own first: a clear error, and the schema, before the pool
            with psycopg.connect(url, **kwargs) as conn:
                migrate(conn, PG_MIGRATIONS, PG)
        except SchemaMismatch as err:
            raise UserError(option, f"cannot use database {self.where}: {err}") from None
        except psycopg.Error as err:
            raise UserError(
                option, f"cannot use database {self.where}: {self._clean(err)}"
            ) from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            # RawCursor: statements go as rendered ($1, ...), without psycopg's %s rewriting.
            kwargs={**kwargs, "cursor_factory": psycopg.RawCursor},
            timeout=timeout,
            name="gemfinder-store",
            open=True,
        )
        self._writes = WriteBehind(self._write_answers)
        self._behind: dict[str, int] = {}  # search -> the write it waits for (keep_up)

    def close(self) -> None:
        self._writes.close()
        self._pool.close()

    def _clean(self, err: BaseException) -> str:
        """One line of the error, with any password in it masked."""
        text = " ".join(str(err).split()) or type(err).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` on a pooled connection; once more on a new one if the server dropped it."""
        for attempt in (1, 2):
            conn = None
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except PoolTimeout:
                raise StoreUnavailable(
                    f"database {self.where} ({self.option}): no connection within "
                    f"{self._timeout:g} s (pool of {self._pool.max_size}; unreachable or busy)"
                ) from None
            except psycopg.OperationalError as err:
                dropped = conn is not None and (conn.broken or conn.closed)
                if attempt == 2 or not dropped:
                    raise StoreUnavailable(
                        f"database {self.where} ({self.option}): {self._clean(err)}"
                    ) from None
                log.warning(
                    "database %s: connection lost (%s); retrying on a new one",
                    self.where,
                    self._clean(err),
                )
                # A server restart or failover drops every idle connection of the pool alike:
                # test them all now (dead ones are replaced), so the retry gets a live one.
                self._pool.check()
        raise AssertionError("unreachable")

    def _after_writes(self, search_id: str | None) -> None:
        """A read sees the writes given before it (and a failed write of its search raises)."""
        self._writes.flush()
        if search_id is not None:
            self._writes.check(search_id)

    def _read(self, template, args=(), after=None, setup=None):  # noqa: ANN001 - SqlStore's
        if after is not None:
            self._after_writes(None if after is True else after)
        sql = self.sql.render(template)
        before = [(self.sql.render(statement), params) for statement, params in setup or ()]

        def work(conn: psycopg.Connection) -> list[tuple]:
            for statement in before:
                conn.execute(*statement)
            return conn.execute(sql, args).fetchall()

        return self._run(work)

    def _write(self, search_id, statements, owner=None, durable=False):  # noqa: ANN001
        """Queued; returns at once (gemfinder.store_writer), or once committed if `durable`.
        The values are copied now: the caller may change its own afterwards."""
        rendered = [(self.sql.render(sql), tuple(args)) for sql, args in statements]

        def work(conn: psycopg.Connection) -> None:
            if len(rendered) == 1 and not durable:
                apply(conn, rendered, search_id, owner)  # one statement: its own transaction
                return
            with conn.transaction():
                if durable:
                    conn.execute("SET LOCAL synchronous_commit = on")
                apply(conn, rendered, search_id, owner)

        self._writes.submit(search_id, lambda: self._run(work), wait=durable)

    def locked(self, key, work):  # noqa: ANN001 - SqlStore's
        def transaction(conn: psycopg.Connection) -> Any:
            def run(template: str, args: tuple) -> list[tuple]:
                cur = conn.execute(self.sql.render(template), args)
                return cur.fetchall() if cur.description else []

            with conn.transaction():
                if key is not None:  # held until the commit; a class of its own (LOCK_CLASS)
                    lock = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
                    conn.execute(lock, (LOCK_CLASS, key))
                return work(run)

        return self._run(transaction)  # run again on a fresh connection: it rolled back

    def put_answers(self, search_id: str, answers: list[tuple[str, int, int, int]]) -> None:
        """Queued apart from the other writes: the writer thread writes every batch queued, of
        every search, in one statement, ahead of the rest (gemfinder.store_writer). When too
        many answers are unwritten the search is told to wait (`keep_up`), so a kill -9 loses
        few."""
        if answers:
            seq = self._writes.submit_answers(search_id, answers)
            if seq is not None:
                self._behind[search_id] = max(seq, self._behind.get(search_id, 0))

    async def keep_up(self, search_id: str) -> None:
        """Wait, off the event loop, for the writes `put_answers` said this search must see
        written before it pays for more queries; raise a write of its that failed."""
        seq = self._behind.pop(search_id, None)
        if seq is not None:
            await asyncio.to_thread(self._writes.wait_done, seq)
            self._writes.check(search_id)

    def _write_answers(self, batches: list[tuple[str, list[tuple]]]) -> None:
        """On the writer thread: the answers of several searches, one statement."""
        rendered = [
            (self.sql.render(sql), tuple(args)) for sql, args in self.answers_statements(batches)
        ]

        def work(conn: psycopg.Connection) -> None:
            apply(conn, rendered, batches[0][0], None)

        self._run(work)

    def _commit(self, template, args=(), after_writes=False):  # noqa: ANN001
        if after_writes:
            self._writes.flush()
        sql = self.sql.render(template)

        def work(conn: psycopg.Connection) -> list[tuple]:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                cur = conn.execute(sql, args)
                return cur.fetchall() if cur.description else []

        return self._run(work)
