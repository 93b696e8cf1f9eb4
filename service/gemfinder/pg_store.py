"""PostgreSQL persistence: the same tables and methods as gemfinder.store's SQLite Store.

Chosen by a `postgresql://` (or `postgres://`) URL in --db / GEMFINDER_DB. The contract is
SQLite's: synchronous methods, called from the event loop thread. A round trip to a server costs
more than a SQLite call, so writes are handed to one writer thread (gemfinder.store_writer: in
order, a failure raised by the search's next call) and return at once; the runner's reads of a
search (snapshot, pulls) first wait for the writes before them. Reads that serve RPCs
(get_search, find_request, the events log) and the evaluation-cache lookup `cached_many` (one
round trip on the loop per batch of pulls) read what is committed: waiting for every search's
queued writes held a busy replica's loop for seconds (a lookup that misses a write still queued
costs at most a query asked twice). Creating a search is not queued either: nothing of a new
search can be before it. Keep the database close: same host or zone. Connections come from a
psycopg_pool pool, which replaces a connection the server dropped; a call that finds its
connection dropped is run once more on a fresh one, after the pool has tested its idle
connections (every write here is idempotent: upserts, or an insert of a new id that ignores its
own earlier attempt). A server that stays unreachable, or a pool with no free connection within
`timeout`, is StoreUnavailable (gRPC UNAVAILABLE), naming the server without its password.

Durability matches the SQLite store's (WAL, synchronous=NORMAL: a commit survives a killed
gemfinder, not a lost machine): the session runs with synchronous_commit off, so the hot path
(answers, snapshots, progress) never waits for a disk flush, while creating a search and
ending one commit synchronously (a request id must not be forgotten once acknowledged).

The schema is created and upgraded on open by gemfinder.migrations (PG_MIGRATIONS), under an
advisory lock, so replicas starting together migrate once.

Leases (see gemfinder.store) are timed by the database's clock (NOW below), so replicas' clocks
do not matter; claims, renewals and releases commit synchronously. A fenced write that finds
the search owned by another replica fails on the writer thread with LeaseLost, which the
search's next call raises (and its writes queued behind are dropped, as for any failed write).
The fenced snapshot locks the search's row (FOR SHARE), so it lands either before a takeover's
claim commits (and the new owner loads it) or not at all.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from gemfinder.errors import UserError
from gemfinder.migrations import PG, PG_MIGRATIONS, SchemaMismatch, migrate
from gemfinder.samples import COLUMNS as SAMPLE_COLUMNS
from gemfinder.samples import Sample
from gemfinder.search.events import Event
from gemfinder.search.values import Progress, Result
from gemfinder.store import (
    COLUMNS,
    ENDED,
    EVENT_COLUMNS,
    FINISHED_EVENT,
    PRUNE_EVENTS,
    SKIPPED,
    UNFINISHED,
    LeaseLost,
    RequestTaken,
    SearchRow,
    _row,
    _sample,
    event_of,
    update_columns,
)
from gemfinder.store_writer import WriteBehind

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 4
POOL_TIMEOUT_S = 5.0
LOOKUP = "SELECT key, reward FROM evals WHERE key = ANY($1::text[])"
NOW = "extract(epoch from clock_timestamp())"  # the database's clock, in seconds
CLAIMABLE = "(owner IS NULL OR owner = %s OR lease_until < " + NOW + ")"


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


class PgStore:
    def __init__(
        self,
        url: str,
        option: str = "--db",
        *,
        pool_size: int = POOL_SIZE,
        timeout: float = POOL_TIMEOUT_S,
    ) -> None:
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
            kwargs=kwargs,
            timeout=timeout,
            name="gemfinder-store",
            open=True,
        )
        self._writes = WriteBehind()

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

    def _one(self, sql: str, args: tuple = (), search_id: str | None = None) -> tuple | None:
        self._after_writes(search_id)
        return self._run(lambda conn: conn.execute(sql, args).fetchone())

    def _all(self, sql: str, args: tuple = (), search_id: str | None = None) -> list[tuple]:
        self._after_writes(search_id)
        return self._run(lambda conn: conn.execute(sql, args).fetchall())

    def _after_writes(self, search_id: str | None) -> None:
        """A read sees the writes given before it (and a failed write of its search raises)."""
        self._writes.flush()
        if search_id is not None:
            self._writes.check(search_id)

    def _write(self, search_id: str, sql: str, args: tuple) -> None:
        """Queued; returns at once (gemfinder.store_writer)."""
        self._writes.submit(search_id, lambda: self._run(lambda conn: conn.execute(sql, args)))

    def _fenced(self, search_id: str, owner: str | None, sql: str, args: tuple):
        """The work of a write that must change a row when `owner` is given (else LeaseLost)."""

        def work(conn: psycopg.Connection) -> None:
            if conn.execute(sql, args).rowcount == 0 and owner is not None:
                raise LeaseLost(search_id, owner)

        return lambda: self._run(work)

    def _durable(
        self,
        search_id: str,
        sql: str,
        args: tuple,
        owner: str | None = None,
        then: tuple[tuple[str, tuple], ...] = (),
    ) -> None:
        """A write that has reached the disk when this returns (synchronous commit); `then`,
        statements run after it in the same transaction."""

        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                if conn.execute(sql, args).rowcount == 0 and owner is not None:
                    raise LeaseLost(search_id, owner)
                for statement in then:
                    conn.execute(*statement)

        self._writes.submit(search_id, lambda: self._run(work), wait=True)

    def _committed(self, sql: str, args: tuple) -> list[tuple]:
        """A statement committed to disk before this returns, on the caller's thread; its rows."""

        def work(conn: psycopg.Connection) -> list[tuple]:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                cur = conn.execute(sql, args)
                return cur.fetchall() if cur.description else []

        return self._run(work)

    # searches -------------------------------------------------------------------------------
    def create_search(
        self,
        search_id: str,
        request_id: str | None,
        spec: dict[str, Any],
        *,
        owner: str | None = None,
        lease_s: float = 0.0,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        now = time.time()
        made = None if provenance is None else json.dumps(provenance)
        # ON CONFLICT (id): a retry after a lost reply finds its own row (ids are fresh uuids);
        # a request_id taken by another search fails: RequestTaken, as in SQLite.
        # Not through the write queue: a new search has no queued write to come after, and
        # waiting for every other search's writes held the event loop for seconds under load.
        try:
            self._committed(
                "INSERT INTO searches (id, request_id, state, spec, created, updated, owner,"
                f" lease_until, provenance) VALUES (%s, %s, 'pending', %s, %s, %s, %s,"
                f" {NOW} + %s, %s) ON CONFLICT (id) DO NOTHING",
                (search_id, request_id, json.dumps(spec), now, now, owner, lease_s, made),
            )
        except psycopg.errors.UniqueViolation:
            raise RequestTaken(request_id) from None

    def update_search(
        self,
        search_id: str,
        *,
        state: str | None = None,
        progress: Progress | None = None,
        result: Result | str | None = None,
        error: str | None = None,
        owner: str | None = None,
    ) -> None:
        """With `owner`, fenced (see gemfinder.store)."""
        sets, args = update_columns("%s", state, progress, result, error)
        sql = f"UPDATE searches SET {', '.join(sets)} WHERE id = %s"
        args.append(search_id)
        if owner is not None:
            sql += " AND owner = %s"
            args.append(owner)
        if state is None:  # progress only: the hot path
            self._writes.submit(search_id, self._fenced(search_id, owner, sql, tuple(args)))
        else:
            then: tuple[tuple[str, tuple], ...] = ()
            if state in ENDED:  # its FINISHED event, and its PROGRESS events pruned
                then = (
                    (FINISHED_EVENT.format(m="%s"), (search_id, time.time(), search_id, search_id)),
                    (PRUNE_EVENTS.format(m="%s"), (search_id, search_id)),
                )
            self._durable(search_id, sql, tuple(args), owner, then)

    # events ---------------------------------------------------------------------------------
    def put_event(
        self,
        search_id: str,
        kind: str,
        progress: Progress | None,
        state: str,
        owner: str | None = None,
    ) -> None:
        """As in gemfinder.store, in one statement, queued (fenced on the writer thread)."""
        now = time.time()
        data = json.dumps(progress.to_json()) if progress is not None else None
        fence = " AND owner = %s" if owner is not None else ""
        # The update's row lock orders this against a claim: before it, or fenced out.
        sql = (
            "WITH s AS (UPDATE searches SET progress = COALESCE(%s, progress), updated = %s"
            f" WHERE id = %s{fence} RETURNING id)"
            " INSERT INTO events (search_id, seq, type, state, progress, created)"
            " SELECT s.id, COALESCE((SELECT MAX(seq) FROM events WHERE search_id = s.id), 0) + 1,"
            " %s, %s, %s, %s FROM s"
        )
        args = (data, now, search_id, *([owner] if owner is not None else []))
        args += (kind, state, data, now)
        self._writes.submit(search_id, self._fenced(search_id, owner, sql, args))

    def events_after(
        self, wanted: list[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[Event]]:
        """As in gemfinder.store: one query for every pair. Not after the queued writes: what
        is committed (the follower's next tick sees the rest)."""
        if not wanted:
            return {}
        ids, seqs = [sid for sid, _ in wanted], [seq for _, seq in wanted]
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT w.sid, w.after, {EVENT_COLUMNS} FROM unnest(%s::text[], %s::bigint[])"
                " AS w (sid, after) CROSS JOIN LATERAL (SELECT * FROM events"
                " WHERE search_id = w.sid AND seq > w.after ORDER BY seq LIMIT %s) e"
                " ORDER BY w.sid, w.after, seq",
                (ids, seqs, limit),
            ).fetchall()
        )
        found: dict[tuple[str, int], list[Event]] = {}
        for sid, after, *event in rows:
            found.setdefault((sid, int(after)), []).append(event_of(*event))
        return found

    def last_event(self, search_id: str) -> tuple[int, str] | None:
        row = self._run(  # what is committed, as events_after reads
            lambda conn: conn.execute(
                "SELECT seq, type FROM events WHERE search_id = %s ORDER BY seq DESC LIMIT 1",
                (search_id,),
            ).fetchone()
        )
        return (int(row[0]), row[1]) if row else None

    def get_search(self, search_id: str) -> SearchRow | None:
        # Not after the queued writes, and not raising a failed one: those are the runner's
        # (its next write raises it), and waiting for every search's writes held the event
        # loop of a busy replica for seconds. A running search's progress comes from its
        # runner (SearchManager.get); how a search ended is written synchronously.
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM searches WHERE id = %s", (search_id,)
            ).fetchone()
        )
        return _row(row) if row else None

    def find_request(self, request_id: str) -> SearchRow | None:
        # Not after the queued writes: a search is created synchronously (create_search).
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM searches WHERE request_id = %s", (request_id,)
            ).fetchone()
        )
        return _row(row) if row else None

    def list_searches(
        self,
        limit: int,
        after: tuple[float, str] | None = None,
        state: str | None = None,
        request_id: str | None = None,
    ) -> list[SearchRow]:
        """Newest first; `after` is the (created, id) of the last row of the previous page."""
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            where.append("(created, id) < (%s, %s)")
            args += [after[0], after[1]]
        if state is not None:
            where.append("state = %s")
            args.append(state)
        if request_id:
            where.append("request_id = %s")
            args.append(request_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._all(
            f"SELECT {COLUMNS} FROM searches {clause} ORDER BY created DESC, id DESC LIMIT %s",
            (*args, limit),
        )
        return [_row(r) for r in rows]

    def unfinished(self) -> list[SearchRow]:
        rows = self._all(
            f"SELECT {COLUMNS} FROM searches WHERE state IN (%s, %s) ORDER BY created", UNFINISHED
        )
        return [_row(r) for r in rows]

    # leases ---------------------------------------------------------------------------------
    def claimable(self, owner: str, limit: int) -> list[tuple[str, str | None]]:
        """(id, current owner) of unfinished searches `owner` may claim, oldest first."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT id, owner FROM searches WHERE state IN (%s, %s) AND {CLAIMABLE}"
                " ORDER BY created LIMIT %s",
                (*UNFINISHED, owner, limit),
            ).fetchall()
        )
        return [(sid, prev) for sid, prev in rows]

    def claim(self, search_id: str, owner: str, lease_s: float) -> SearchRow | None:
        """Take the lease if free, ours or expired (one atomic UPDATE); the row, or None."""
        rows = self._committed(
            f"UPDATE searches SET owner = %s, lease_until = {NOW} + %s"
            f" WHERE id = %s AND state IN (%s, %s) AND {CLAIMABLE} RETURNING {COLUMNS}",
            (owner, lease_s, search_id, *UNFINISHED, owner),
        )
        return _row(rows[0]) if rows else None

    def renew(self, owner: str, lease_s: float) -> dict[str, bool]:
        """Extend every lease `owner` holds: one statement; {id: cancel requested} of those it
        still holds."""
        rows = self._committed(
            f"UPDATE searches SET lease_until = {NOW} + %s"
            " WHERE owner = %s AND state IN (%s, %s)"
            " RETURNING id, cancel_requested IS NOT NULL",
            (lease_s, owner, *UNFINISHED),
        )
        return {sid: bool(cancel) for sid, cancel in rows}

    def request_cancel(self, search_id: str) -> bool:
        """As in gemfinder.store: committed when this returns, not queued."""
        rows = self._committed(
            f"UPDATE searches SET cancel_requested = COALESCE(cancel_requested, {NOW})"
            " WHERE id = %s AND state IN (%s, %s) RETURNING id",
            (search_id, *UNFINISHED),
        )
        return bool(rows)

    def release(self, owner: str) -> int:
        """Give up every lease `owner` holds, after its queued writes (its last snapshots)."""
        self._writes.flush()
        rows = self._committed(
            f"UPDATE searches SET owner = NULL, lease_until = {NOW}"
            " WHERE owner = %s AND state IN (%s, %s) RETURNING id",
            (owner, *UNFINISHED),
        )
        return len(rows)

    # snapshots ------------------------------------------------------------------------------
    def save_snapshot(self, search_id: str, data: bytes, owner: str | None = None) -> None:
        """With `owner`, fenced: written only while the search's row says `owner`, locked."""
        upsert = (
            " ON CONFLICT (search_id) DO UPDATE SET data = excluded.data,"
            " updated = excluded.updated"
        )
        if owner is None:
            sql = "INSERT INTO snapshots (search_id, data, updated) VALUES (%s, %s, %s)" + upsert
            args: tuple = (search_id, bytes(data), time.time())
        else:
            sql = (
                "INSERT INTO snapshots (search_id, data, updated) SELECT %s, %s, %s WHERE EXISTS"
                " (SELECT 1 FROM searches WHERE id = %s AND owner = %s FOR SHARE)" + upsert
            )
            args = (search_id, bytes(data), time.time(), search_id, owner)
        self._writes.submit(search_id, self._fenced(search_id, owner, sql, args))

    def load_snapshot(self, search_id: str) -> bytes | None:
        row = self._one("SELECT data FROM snapshots WHERE search_id = %s", (search_id,), search_id)
        return bytes(row[0]) if row else None

    # serving-cost ledger (migration 9) -------------------------------------------------------
    def save_serving_ledger(
        self, search_id: str, states: dict[str, Any], owner: str | None = None
    ) -> None:
        """As Store.save_serving_ledger: one statement (the rows as two text[]), queued behind
        the search's other writes, fenced by the lease."""
        if not states:
            return
        urls = list(states)
        bodies = [json.dumps(states[url]) for url in urls]
        fence = (
            ""
            if owner is None
            else " WHERE EXISTS (SELECT 1 FROM searches WHERE id = %s AND owner = %s FOR SHARE)"
        )
        sql = (
            "INSERT INTO serving_ledgers (search_id, endpoint, state)"
            " SELECT %s, e, s FROM unnest(%s::text[], %s::text[]) AS t(e, s)"
            + fence
            + " ON CONFLICT (search_id, endpoint) DO UPDATE SET state = excluded.state"
        )
        args: tuple = (search_id, urls, bodies)
        if owner is not None:
            args = (*args, search_id, owner)
        self._writes.submit(search_id, self._fenced(search_id, owner, sql, args))

    def serving_ledger(self, search_id: str) -> dict[str, Any]:
        rows = self._all(
            "SELECT endpoint, state FROM serving_ledgers WHERE search_id = %s",
            (search_id,),
            search_id,
        )
        return {url: json.loads(state) for url, state in rows}

    # evaluation cache -----------------------------------------------------------------------
    def cached_many(self, keys: list[str]) -> dict[str, int]:
        """{key: reward} of the `keys` in the evaluation cache (a key not cached is absent): one
        round trip for a whole batch of the scheduler's pulls, whatever its size (the keys go as
        one text[] parameter). Not after the queued writes (see the module docstring)."""
        if not keys:
            return {}
        # A RawCursor sends the statement as written ($1), skipping psycopg's %s rewriting.
        rows = self._run(lambda conn: psycopg.RawCursor(conn).execute(LOOKUP, (keys,)).fetchall())
        return {key: int(reward) for key, reward in rows}

    def put_answers(self, search_id: str, answers: list[tuple[str, int, int, int]]) -> None:
        """Record graded pulls (cache key, model, item, reward) of a search: one statement (so
        one round trip, atomic), whatever the number of answers. A re-told pull is ignored; a
        grade replaces a pull marked skipped."""
        if not answers:
            return
        keys, models, items, rewards = (list(column) for column in zip(*answers, strict=True))
        self._write(
            search_id,
            (
                # A repeated pull in one batch keeps its first grade, as the row-by-row SQLite
                # store does (and ON CONFLICT DO UPDATE may touch a row once per statement).
                "WITH a AS (SELECT * FROM unnest(%s::text[], %s::int[], %s::int[], %s::int[])"
                " WITH ORDINALITY AS a (key, model, item, reward, n)),"
                " e AS (INSERT INTO evals (key, reward, created)"
                "  SELECT DISTINCT ON (key) key, reward, %s FROM a ORDER BY key, n"
                "  ON CONFLICT (key) DO NOTHING)"
                " INSERT INTO pulls (search_id, model, item, reward)"
                " SELECT DISTINCT ON (model, item) %s, model, item, reward FROM a"
                " ORDER BY model, item, n ON CONFLICT (search_id, model, item)"
                " DO UPDATE SET reward = excluded.reward"
                " WHERE pulls.reward < 0"
            ),
            (keys, models, items, rewards, time.time(), search_id),
        )

    def put_skipped(self, search_id: str, pulls: list[tuple[int, int]]) -> None:
        """Mark pulls (model, item) that failed on every attempt and were skipped."""
        if not pulls:
            return
        models, items = (list(column) for column in zip(*pulls, strict=True))  # copied now
        self._write(
            search_id,
            "INSERT INTO pulls (search_id, model, item, reward)"
            " SELECT %s, model, item, %s FROM unnest(%s::int[], %s::int[]) AS p (model, item)"
            " ON CONFLICT DO NOTHING",
            (search_id, SKIPPED, models, items),
        )

    def skipped(self, search_id: str) -> dict[int, int]:
        """{model: pulls skipped after failing on every attempt} of a search."""
        rows = self._all(
            "SELECT model, COUNT(*) FROM pulls WHERE search_id = %s AND reward < 0 GROUP BY model",
            (search_id,),
            search_id,
        )
        return {int(model): int(count) for model, count in rows}

    def outcomes(self, search_id: str, models: list[int]) -> dict[int, dict[int, int]]:
        """{model: {item: reward}} of the graded pulls of `models` in a search."""
        out: dict[int, dict[int, int]] = {m: {} for m in models}
        rows = self._all(
            "SELECT model, item, reward FROM pulls"
            " WHERE search_id = %s AND reward >= 0 AND model = ANY(%s::int[])",
            (search_id, list(models)),
            search_id,
        )
        for model, item, reward in rows:
            out[model][item] = reward
        return out

    def task_counts(
        self, search_id: str, item_tasks: list[int]
    ) -> dict[int, dict[int, tuple[int, int]]]:
        """{model: {task: (graded pulls, successes)}} of a search, counted by the server."""
        rows = self._all(
            "SELECT p.model, t.task, COUNT(*), SUM(p.reward) FROM pulls p"
            " JOIN unnest(%s::int[]) WITH ORDINALITY AS t (task, n) ON p.item = t.n - 1"
            " WHERE p.search_id = %s AND p.reward >= 0 GROUP BY p.model, t.task",
            (list(item_tasks), search_id),
            search_id,
        )
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for model, task, n, hits in rows:
            out.setdefault(int(model), {})[int(task)] = (int(n), int(hits))
        return out

    def drop_pulls(self, search_id: str) -> None:
        """Forget the graded pulls of an ended search (see gemfinder.store)."""
        self._write(search_id, "DELETE FROM pulls WHERE search_id = %s", (search_id,))

    def count_evals(self) -> int:
        row = self._one("SELECT COUNT(*) FROM evals")
        return int(row[0]) if row else 0

    # samples log (gemfinder.samples) ---------------------------------------------------------
    def put_samples(self, search_id: str, samples: list[Sample]) -> None:
        """Log graded queries: one statement; a pull logged before keeps its first."""
        if not samples:
            return
        columns = [list(c) for c in zip(*(s.row() for s in samples), strict=True)]
        columns[5] = [bool(v) for v in columns[5]]  # cached, gem_check: booleans here
        columns[6] = [bool(v) for v in columns[6]]
        self._write(
            search_id,
            f"INSERT INTO samples (search_id, {SAMPLE_COLUMNS}, created)"
            " SELECT %s, s.*, %s FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[],"
            " %s::smallint[], %s::boolean[], %s::boolean[], %s::text[], %s::text[],"
            " %s::int[], %s::int[]) AS s ON CONFLICT DO NOTHING",
            (search_id, time.time(), *columns),
        )

    def samples(self, search_id: str, after: tuple[int, int], limit: int) -> list[Sample]:
        """Up to `limit` samples of a search after (model, item) `after`, in that order."""
        rows = self._all(
            f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE search_id = %s"
            " AND (model, item) > (%s, %s) ORDER BY model, item LIMIT %s",
            (search_id, after[0], after[1], limit),
            search_id,
        )
        return [_sample(r) for r in rows]

    def original_samples(self, keys: list[str]) -> dict[str, tuple[str, Sample]]:
        """{cache key: (search id, sample)} of the queries that produced these cached answers."""
        rows = self._all(
            f"SELECT DISTINCT ON (key) search_id, {SAMPLE_COLUMNS} FROM samples"
            " WHERE NOT cached AND key = ANY(%s::text[]) ORDER BY key, created, search_id",
            (sorted(set(keys)),),
        )
        return {row[3]: (row[0], _sample(row[1:])) for row in rows}

    def provenance(self, search_id: str) -> dict[str, Any] | None:
        """What produced a search (None: stored before provenance was recorded)."""
        row = self._one("SELECT provenance FROM searches WHERE id = %s", (search_id,), search_id)
        return json.loads(row[0]) if row and row[0] else None
