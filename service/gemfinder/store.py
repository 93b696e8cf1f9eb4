"""Persistence: searches and their requests, scheduler snapshots, evaluation cache, event logs.

One store, `SqlStore`, on either database: SQLite (WAL), `Store` below, or PostgreSQL,
gemfinder.pg_store.PgStore. Each query is written once; the SQL that differs between the two
(placeholders, the clock, row locks, lists bound as one parameter) is a dialect
(gemfinder.store_dialect), and how statements run (one connection at once, or a pool and a
write-behind queue) is each subclass's three methods `_read`, `_write` and `_commit`.

The pulls table keeps which items each model of a search was graded on, for paired
comparisons (the hidden-gem verdict) that survive a restart; a search's rows go once its result
(which holds the verdict) is stored. The evaluation cache is what makes
a query never paid twice: every graded answer is committed
before it is told to the scheduler, so a search resumed from an older snapshot re-asks lost
pulls and finds them here instead of at the endpoint. A cache key names what produced the
answer (the endpoint as the operator configured it, model, adapter, prompt, decoding:
search.spec.CacheKeys), so one caller's endpoint never answers for another's. The store is
synchronous, called from the event loop thread. The schema is created and upgraded on open by
gemfinder.migrations.

Leases (docs/service.md, Replicas): a running search is owned by one replica (`owner`) until
`lease_until`, renewed by its owner; a replica claims a search only when it is free (no owner),
its own, or its lease has expired, in one atomic UPDATE. Writes that only the owner may make
(snapshot, progress, state, result) take the owner and are fenced: one that finds the search
owned by another replica raises LeaseLost and changes nothing. Lease times are the database's
clock (PostgreSQL's is the one every replica shares; SQLite serves one machine). A cancel asked
through any replica is a column of the search (`request_cancel`), which the owner's renewal
returns with its leases.

A path that cannot hold a database (missing directory, a directory, a file that is not SQLite)
is a UserError naming the option, and such a file is left untouched. `open_store` picks this
store or gemfinder.pg_store's PostgreSQL one (same methods) from what the option gives.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

from gemfinder.errors import UserError
from gemfinder.migrations import migrate
from gemfinder.samples import COLUMNS as SAMPLE_COLUMNS
from gemfinder.samples import Sample
from gemfinder.search.events import Event
from gemfinder.search.values import Progress, Result
from gemfinder.store_dialect import SQLITE, Dialect, Statement

UNFINISHED = ("pending", "running")
ENDED = ("succeeded", "failed", "cancelled")
COLUMNS = "id, request_id, state, spec, created, updated, progress, result, error"
SKIPPED = -1
SQLITE_HEADER = b"SQLite format 3\x00"


class LeaseLost(Exception):
    """A fenced write found the search owned by another replica: its lease expired and the
    search was taken over. The runner stops quietly; the new owner carries on."""

    def __init__(self, search_id: str, owner: str) -> None:
        super().__init__(f"search {search_id}: lease lost by replica {owner}")
        self.search_id = search_id


class RequestTaken(Exception):
    """create_search found its request id taken (by a concurrent start on another replica)."""


@dataclass
class SearchRow:
    id: str
    request_id: str | None
    state: str
    spec: dict[str, Any]
    created: float
    updated: float
    progress: Progress | None
    result: Result | None
    error: str | None


def _check_path(path: str, option: str) -> None:
    """Refuse, before SQLite touches anything, a path that cannot be a database."""
    if path == ":memory:" or path.startswith("file:"):
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(option, f"{path} is a directory; give a database file")
    if not target.exists():
        if not target.parent.is_dir():
            raise UserError(option, f"cannot create {path}: no directory {target.parent}")
        return
    try:
        with target.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise UserError(option, f"cannot read {path}: {err.strerror}") from None
    if head and head != SQLITE_HEADER:  # an empty file is an empty database to SQLite
        raise UserError(option, f"{path} is not a SQLite database (left untouched)")


T = TypeVar("T")
Run = Callable[[str, tuple], list[tuple]]  # a statement of a `locked` transaction -> its rows


class SqlStore:
    """The store's methods, each query written once (the SQL that differs: `sql`, a
    gemfinder.store_dialect.Dialect). How statements run is the subclass's: `_read`, `_write`
    and `_commit` (SQLite: at once, on one connection; PostgreSQL: pooled, writes queued)."""

    sql: Dialect
    # Writes queued behind the caller (PostgreSQL): a search then hands the oracle no more
    # queries than the endpoints run at once (SearchRunner._cap_window).
    writes_behind = False

    def __init__(self) -> None:
        # The last event number of each search this store appends to: the next is decided
        # before its write, so a write run again (a retry after a lost reply) adds nothing.
        self._seqs: dict[str, int] = {}

    # how statements run (the backends') -----------------------------------------------------
    def _read(
        self,
        template: str,
        args: tuple = (),
        after: str | bool | None = None,
        setup: list[Statement] | None = None,
    ) -> list[tuple]:
        """Rows of a query, after the `setup` statements on the same connection. `after`: None
        reads what is committed; True, after the writes given before; a search id, after them
        too, raising that search's failed write (PostgreSQL queues writes; SQLite does not)."""
        raise NotImplementedError

    def _write(
        self,
        search_id: str,
        statements: list[Statement],
        owner: str | None = None,
        durable: bool = False,
    ) -> None:
        """Statements of a search run in one transaction; with `owner`, fenced: LeaseLost (and
        nothing written) when the first changes no row. `durable`: committed to disk when this
        returns (a state recorded, a search ended)."""
        raise NotImplementedError

    def _commit(self, template: str, args: tuple = (), after_writes: bool = False) -> list[tuple]:
        """One statement committed (durably) when this returns, on the caller's thread; its
        rows (RETURNING). `after_writes`: after the writes given before."""
        raise NotImplementedError

    def locked(self, key: str | None, work: Callable[[Run], T]) -> T:
        """`work(run)` in one transaction, holding the lock of `key` (None: no lock) until it
        commits; `run(template, args)` executes a statement of it and returns its rows. For the
        few read-decide-write steps one statement cannot express (gemfinder.lora_leases)."""
        raise NotImplementedError

    async def off_loop_locked(self, key: str | None, work: Callable[[Run], T]) -> T:
        """`locked`, on a worker thread (PostgreSQL: a round trip or more per call)."""
        return await asyncio.to_thread(self.locked, key, work)

    async def off_loop(self, read: Callable[..., T], *args: Any) -> T:
        """`read(*args)`, one of this store's reading methods, on a worker thread: the heavy
        ones (task_counts at a search's end, get_search parsing a stored result) held the event
        loop for tens to hundreds of ms. It reads as it would on the loop: what is committed,
        and with `after=`, after the writes given before this call (PostgreSQL: its pool and
        writer queue are thread-safe, and the queue holds every write given before)."""
        return await asyncio.to_thread(read, *args)

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
        """Insert a pending search, leased to `owner` (if given) for `lease_s` seconds, with
        what produced it (gemfinder.provenance). Raises RequestTaken when another search holds
        `request_id`."""
        now = time.time()
        made = None if provenance is None else json.dumps(provenance)
        # ON CONFLICT (id): a retry after a lost reply finds its own row (ids are fresh uuids);
        # a request_id taken by another search fails: RequestTaken.
        try:
            self._commit(
                CREATE_SEARCH,
                (search_id, request_id, json.dumps(spec), now, now, owner, lease_s, made),
            )
        except self.sql.unique_violation:
            if request_id is None:
                raise
            raise RequestTaken(request_id) from None
        self._seqs[search_id] = 0

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
        """With `owner`, fenced: raises LeaseLost (and writes nothing) unless it owns the search.
        A state is recorded durably; progress alone is the hot path. `result` may come as its
        JSON text already (search.manager encodes it off the loop)."""
        sets, args = update_columns(state, progress, result, error)
        fence, fenced = _fence(owner)
        statements = [(f"UPDATE searches SET {', '.join(sets)} WHERE id = ?{fence}",
                       (*args, search_id, *fenced))]  # fmt: skip
        if state in ENDED:  # its FINISHED event, and its PROGRESS events pruned
            statements.append((FINISHED_EVENT, (search_id, time.time(), search_id, search_id)))
            statements.append((PRUNE_EVENTS, (search_id, search_id)))
            self._seqs.pop(search_id, None)
        self._write(search_id, statements, owner, durable=state is not None)

    # events ---------------------------------------------------------------------------------
    def put_event(
        self,
        search_id: str,
        kind: str,
        progress: Progress | None,
        state: str,
        owner: str | None = None,
    ) -> None:
        """Append an event to the search's log and store its progress as the search's (so
        GetSearch on any replica follows it); with `owner`, fenced as update_search is."""
        now = time.time()
        data = json.dumps(progress.to_json()) if progress is not None else None
        seq = self._next_seq(search_id)
        fence, fenced = _fence(owner)
        # The update's row lock orders this against a claim: before it, or fenced out; the
        # event is written only if the update was (one statement on PostgreSQL).
        touch = (TOUCH_SEARCH + fence, (data, now, search_id, *fenced))
        event = (PUT_EVENT, (search_id, seq, kind, state, data, now))
        self._write(search_id, self.sql.then(touch, event), owner)

    def _next_seq(self, search_id: str) -> int:
        """The number of the search's next event. Only its owner appends (fenced), and a claim
        forgets the number (another replica may have appended since), so it is read again."""
        last = self._seqs.get(search_id)
        if last is None:
            last = int(self._read(LAST_SEQ, (search_id,), search_id)[0][0])
        self._seqs[search_id] = last + 1
        return last + 1

    def events_after(
        self, wanted: list[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[Event]]:
        """For each (search id, seq): up to `limit` events of that search after seq, in order;
        only the pairs that have some. One query for every pair; what is committed (not after
        queued writes: the follower's next tick sees the rest)."""
        if not wanted:
            return {}
        rows = self._read(EVENTS_AFTER, (limit - 1, *self.sql.rows(wanted, 2)))
        found: dict[tuple[str, int], list[Event]] = {}
        for sid, after, *event in rows:
            found.setdefault((sid, int(after)), []).append(event_of(*event))
        return found

    def last_event(self, search_id: str) -> tuple[int, str] | None:
        """(seq, type) of the search's last event, or None before its first (committed)."""
        rows = self._read(
            "SELECT seq, type FROM events WHERE search_id = ? ORDER BY seq DESC LIMIT 1",
            (search_id,),
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def get_search(self, search_id: str) -> SearchRow | None:
        # What is committed: not after queued writes, nor raising a failed one (those are the
        # runner's: its next write raises it); waiting for every search's writes held the
        # event loop of a busy replica for seconds. A running search's progress comes from its
        # runner (SearchManager.get); how a search ended is written durably.
        rows = self._read(f"SELECT {COLUMNS} FROM searches WHERE id = ?", (search_id,))
        return _row(rows[0]) if rows else None

    def find_request(self, request_id: str) -> SearchRow | None:
        # What is committed: a search is created at once (create_search).
        rows = self._read(f"SELECT {COLUMNS} FROM searches WHERE request_id = ?", (request_id,))
        return _row(rows[0]) if rows else None

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
            where.append("(created, id) < (?, ?)")
            args += [after[0], after[1]]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT {COLUMNS} FROM searches {clause} ORDER BY created DESC, id DESC LIMIT ?",
            (*args, limit),
            True,
        )
        return [_row(r) for r in rows]

    def unfinished(self) -> list[SearchRow]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM searches WHERE state IN (?, ?) ORDER BY created",
            UNFINISHED,
            True,
        )
        return [_row(r) for r in rows]

    # leases ---------------------------------------------------------------------------------
    def claimable(self, owner: str, limit: int) -> list[tuple[str, str | None]]:
        """(id, current owner) of unfinished searches `owner` may claim, oldest first: a hint
        for `claim`, which decides."""
        rows = self._read(
            f"SELECT id, owner FROM searches WHERE state IN (?, ?) AND {CLAIMABLE}"
            " ORDER BY created LIMIT ?",
            (*UNFINISHED, owner, limit),
        )
        return [(sid, prev) for sid, prev in rows]

    def claim(self, search_id: str, owner: str, lease_s: float) -> SearchRow | None:
        """Take the lease of an unfinished search if it is free, ours, or expired (one atomic
        UPDATE); the row, or None when another replica holds it (or it has ended)."""
        self._seqs.pop(search_id, None)  # another replica may have appended events since
        rows = self._commit(
            "UPDATE searches SET owner = ?, lease_until = {now} + ?"
            f" WHERE id = ? AND state IN (?, ?) AND {CLAIMABLE} RETURNING {COLUMNS}",
            (owner, lease_s, search_id, *UNFINISHED, owner),
        )
        return _row(rows[0]) if rows else None

    def renew(self, owner: str, lease_s: float) -> dict[str, bool]:
        """Extend every lease `owner` holds on an unfinished search, in one statement:
        {id: cancel requested} of the searches it still holds."""
        rows = self._commit(
            "UPDATE searches SET lease_until = {now} + ? WHERE owner = ? AND state IN (?, ?)"
            " RETURNING id, cancel_requested IS NOT NULL",
            (lease_s, owner, *UNFINISHED),
        )
        return {sid: bool(cancel) for sid, cancel in rows}

    def request_cancel(self, search_id: str) -> bool:
        """Record that the search is to be cancelled (CancelSearch on any replica; its owner
        reads it at its next renewal); False when it has ended (or does not exist)."""
        rows = self._commit(
            "UPDATE searches SET cancel_requested = COALESCE(cancel_requested, {now})"
            " WHERE id = ? AND state IN (?, ?) RETURNING id",
            (search_id, *UNFINISHED),
        )
        return bool(rows)

    def release(self, owner: str) -> int:
        """Give up every lease `owner` holds (graceful shutdown), after its writes (its last
        snapshots): others may claim at once."""
        rows = self._commit(
            "UPDATE searches SET owner = NULL, lease_until = {now}"
            " WHERE owner = ? AND state IN (?, ?) RETURNING id",
            (owner, *UNFINISHED),
            after_writes=True,
        )
        return len(rows)

    # snapshots ------------------------------------------------------------------------------
    def save_snapshot(self, search_id: str, data: bytes, owner: str | None = None) -> None:
        """With `owner`, fenced: written only while the search's row says `owner`, held (so the
        snapshot lands before a takeover's claim commits, and the new owner loads it, or not
        at all)."""
        if owner is None:
            self._write(search_id, [(PUT_SNAPSHOT, (search_id, bytes(data), time.time()))])
            return
        self._write(
            search_id,
            [(PUT_OWN_SNAPSHOT, (search_id, bytes(data), time.time(), search_id, owner))],
            owner,
        )

    def load_snapshot(self, search_id: str) -> bytes | None:
        rows = self._read("SELECT data FROM snapshots WHERE search_id = ?", (search_id,), search_id)
        return bytes(rows[0][0]) if rows else None

    # serving-cost ledger (migration 9) -------------------------------------------------------
    def save_serving_ledger(
        self, search_id: str, states: dict[str, Any], owner: str | None = None
    ) -> None:
        """The serving-cost ledger of the endpoints `states` names ({endpoint: SlotLedger
        state}), which a resume continues from: one statement, all the rows or none; with
        `owner`, fenced as save_snapshot is."""
        if not states:
            return
        rows = self.sql.rows([(url, json.dumps(state)) for url, state in states.items()], 2)
        if owner is None:
            self._write(search_id, [(PUT_LEDGER, (search_id, *rows))])
            return
        self._write(search_id, [(PUT_OWN_LEDGER, (search_id, *rows, search_id, owner))], owner)

    def serving_ledger(self, search_id: str) -> dict[str, Any]:
        """{endpoint: SlotLedger state} as last saved (empty: none)."""
        rows = self._read(
            "SELECT endpoint, state FROM serving_ledgers WHERE search_id = ?",
            (search_id,),
            search_id,
        )
        return {url: json.loads(state) for url, state in rows}

    # evaluation cache -----------------------------------------------------------------------
    def cached_many(self, keys: list[str]) -> dict[str, int]:
        """{key: reward} of the `keys` in the evaluation cache (a key not cached is absent): a
        whole batch of the scheduler's pulls in one query, whatever its size (the keys are one
        parameter). What is committed: waiting for every search's queued writes held a busy
        replica's loop for seconds, and a lookup that misses a queued write costs at most a
        query asked twice."""
        if not keys:
            return {}
        rows = self._read("SELECT key, reward FROM evals WHERE key {in:text}", self.sql.list(keys))
        return {key: int(reward) for key, reward in rows}

    def put_answers(self, search_id: str, answers: list[tuple[str, int, int, int]]) -> None:
        """Record graded pulls (cache key, model, item, reward) of a search, atomically.

        A pull re-told after a resume is ignored: the key and the pull are already there. A
        grade replaces a pull marked skipped (`put_skipped`). A key or pull repeated in one
        batch keeps its first (ON CONFLICT DO UPDATE may touch a row once per statement).
        """
        if not answers:
            return
        self._write(search_id, self.answers_statements([(search_id, answers)]))

    async def keep_up(self, search_id: str) -> None:
        """Return once the answers this search handed over are durable enough to pay for more
        queries (a store that writes behind bounds what a kill -9 loses this way). SQLite
        commits `put_answers` before it returns: nothing to wait for."""

    def answers_statements(self, batches: list[tuple[str, list[tuple]]]) -> list[Statement]:
        """The writes of graded answers [(search id, [(key, model, item, reward), ...]), ...],
        of one search or of several at once (PostgreSQL's write-behind merges what is queued):
        one statement on PostgreSQL. A key or pull repeated keeps its first (ON CONFLICT DO
        UPDATE may touch a row once per statement), as when written one batch after another."""
        evals: dict[str, tuple[str, int]] = {}
        pulls: dict[tuple[str, int, int], tuple[str, int, int, int]] = {}
        for search_id, answers in batches:
            for key, model, item, reward in answers:
                evals.setdefault(key, (key, reward))
                pulls.setdefault((search_id, model, item), (search_id, model, item, reward))
        # Sorted: replicas writing the same keys at once lock them in one order (no deadlock).
        statements = [
            (PUT_EVALS, (time.time(), *self.sql.rows(sorted(evals.values()), 2))),
            (PUT_PULLS, self.sql.rows(sorted(pulls.values()), 4)),
        ]
        return self.sql.together(statements)

    def put_skipped(self, search_id: str, pulls: list[tuple[int, int]]) -> None:
        """Mark pulls (model, item) that failed on every attempt and were skipped: a model's
        evidence lost to failures, for the recommendation rule (search.runner)."""
        if not pulls:
            return
        self._write(search_id, [(PUT_SKIPPED, (search_id, SKIPPED, *self.sql.rows(pulls, 2)))])

    def skipped(self, search_id: str) -> dict[int, int]:
        """{model: pulls skipped after failing on every attempt} of a search."""
        rows = self._read(
            "SELECT model, COUNT(*) FROM pulls WHERE search_id = ? AND reward < 0 GROUP BY model",
            (search_id,),
            search_id,
        )
        return {int(model): int(count) for model, count in rows}

    def outcomes(self, search_id: str, models: list[int]) -> dict[int, dict[int, int]]:
        """{model: {item: reward}} of the graded pulls of `models` in a search: one query,
        whatever the number of models (the list is one parameter)."""
        out: dict[int, dict[int, int]] = {m: {} for m in models}
        rows = self._read(
            "SELECT model, item, reward FROM pulls"
            " WHERE search_id = ? AND reward >= 0 AND model {in:int}",
            (search_id, *self.sql.list(models)),
            search_id,
        )
        for model, item, reward in rows:
            out[model][item] = reward
        return out

    def task_counts(
        self, search_id: str, item_tasks: list[int]
    ) -> dict[int, dict[int, tuple[int, int]]]:
        """{model: {task: (graded pulls, successes)}} of a search, `item_tasks[i]` being item
        i's task: counted by the database, so a search of 500,000 answers hands back one row
        per model and task (0.4 s rather than 2.7 s through Python at 5,000 models x 100
        answers on SQLite)."""
        setup, args = self.sql.item_tasks(item_tasks)
        rows = self._read(
            "SELECT p.model, t.task, COUNT(*), SUM(p.reward) FROM pulls p"
            " JOIN {item_tasks} t ON t.item = p.item WHERE p.search_id = ? AND p.reward >= 0"
            " GROUP BY p.model, t.task",
            (*args, search_id),
            search_id,
            setup,
        )
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for model, task, n, hits in rows:
            out.setdefault(int(model), {})[int(task)] = (int(n), int(hits))
        return out

    def drop_pulls(self, search_id: str) -> None:
        """Forget the graded pulls of an ended search: its stored result already holds what the
        verdict needed, and the evaluation cache keeps the answers themselves."""
        self._write(search_id, [("DELETE FROM pulls WHERE search_id = ?", (search_id,))])

    def count_evals(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM evals", (), True)[0][0])

    # samples log (gemfinder.samples) ---------------------------------------------------------
    def put_samples(self, search_id: str, samples: list[Sample]) -> None:
        """Log graded queries; a pull logged before (re-told after a resume) keeps its first."""
        if not samples:
            return
        rows = [(*r[:5], bool(r[5]), bool(r[6]), *r[7:]) for r in (s.row() for s in samples)]
        self._write(search_id, [(PUT_SAMPLES, (search_id, time.time(), *self.sql.rows(rows, 11)))])

    def samples(self, search_id: str, after: tuple[int, int], limit: int) -> list[Sample]:
        """Up to `limit` samples of a search after (model, item) `after`, in that order."""
        rows = self._read(
            f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE search_id = ?"
            " AND (model, item) > (?, ?) ORDER BY model, item LIMIT ?",
            (search_id, after[0], after[1], limit),
            search_id,
        )
        return [_sample(r) for r in rows]

    def original_samples(self, keys: list[str]) -> dict[str, tuple[str, Sample]]:
        """{cache key: (search id, sample)} of the queries that produced these cached answers
        (the earliest logged, when two searches asked at once); keys without one are left out."""
        if not keys:
            return {}
        rows = self._read(
            f"SELECT search_id, {SAMPLE_COLUMNS} FROM samples WHERE cached = {{false}}"
            " AND key {in:text} ORDER BY key, created, search_id",
            self.sql.list(sorted(set(keys))),
            True,
        )
        out: dict[str, tuple[str, Sample]] = {}
        for sid, *row in rows:
            out.setdefault(row[2], (sid, _sample(row)))  # the earliest first
        return out

    def provenance(self, search_id: str) -> dict[str, Any] | None:
        """What produced a search (None: stored before provenance was recorded)."""
        rows = self._read("SELECT provenance FROM searches WHERE id = ?", (search_id,), search_id)
        return json.loads(rows[0][0]) if rows and rows[0][0] else None


def apply(conn: Any, statements: list[Statement], search_id: str, owner: str | None) -> None:
    """Run rendered statements on a connection; with `owner`, LeaseLost when the first changes
    no row (the caller's transaction then writes nothing)."""
    for n, (sql, args) in enumerate(statements):
        done = conn.execute(sql, args)
        if n == 0 and owner is not None and done.rowcount == 0:
            raise LeaseLost(search_id, owner)


class Store(SqlStore):
    """SQLite: one connection, used from the event loop thread only; each call runs at once
    (tens of microseconds), a write in a short transaction of its own. `off_loop` reads on a
    worker thread through read-only connections of their own (one per reading thread at a
    time, kept for reuse): WAL lets them read while the loop's connection writes."""

    sql = SQLITE

    def __init__(self, path: str | Path = ":memory:", option: str = "db") -> None:
        """Open (or create) the database at `path`; `option` names the setting that gave the
        path (e.g. "--store"), for the UserError raised when it cannot be used."""
        super().__init__()
        self.path = str(path)
        _check_path(self.path, option)
        self._local = threading.local()  # .conn: the read connection of an off_loop read
        self._readers: list[sqlite3.Connection] = []  # idle read connections
        self._readers_lock = threading.Lock()
        self._closed = False  # read connections checked in after close() are closed
        # Another connection sees the same database only through a file: a memory database
        # (or a URI, kept as given) is read on the loop, as before (tests, one-off CLI runs).
        self._reader_uri = (
            None
            if self.path == ":memory:" or self.path.startswith("file:")
            else f"file:{pathname2url(os.path.abspath(self.path))}?mode=ro"
        )
        try:
            # isolation_level=None: explicit transactions only, so each write commits at once.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise UserError(option, f"cannot open database {self.path}: {err}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (not a power loss): enough for resume.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            migrate(self._db)  # the schema, created or brought up to date (gemfinder.migrations)
        except sqlite3.Error as err:
            self._db.close()
            raise UserError(option, f"cannot use database {self.path}: {err}") from None

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers, self._closed = self._readers, [], True
        for conn in readers:
            conn.close()
        self._db.close()

    async def off_loop(self, read: Callable[..., T], *args: Any) -> T:
        if self._reader_uri is None:
            return read(*args)
        return await asyncio.to_thread(self._on_reader, read, *args)

    def _on_reader(self, read: Callable[..., T], *args: Any) -> T:
        """`read` with this thread's reads on a read connection. Safe, and as fresh as on the
        loop: every write of this store commits on the loop thread before its call returns (no
        transaction is left open across an await), so a write given before this read is
        committed when it starts, and a new read transaction (autocommit: one per statement)
        sees it; `after=` asks for nothing more. The temporary item_tasks table of task_counts
        is the connection's own, so concurrent readers do not share it."""
        with self._reader() as conn:
            self._local.conn = conn
            try:
                return read(*args)
            finally:
                self._local.conn = None

    @contextmanager
    def _reader(self):  # noqa: ANN202 - a context manager of a connection
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = sqlite3.connect(
                self._reader_uri, uri=True, isolation_level=None, check_same_thread=False
            )
        try:
            yield conn
        except BaseException:
            conn.close()  # a failed read may leave it mid-statement: not reused
            raise
        with self._readers_lock:
            if not self._closed:
                self._readers.append(conn)
                return
        conn.close()  # the store closed meanwhile

    def _read(self, template, args=(), after=None, setup=None):  # noqa: ANN001 - SqlStore's
        # On the loop the store's connection; in off_loop, the thread's read connection.
        db = getattr(self._local, "conn", None) or self._db
        for statement, params in setup or ():
            db.execute(self.sql.render(statement), params)
        return db.execute(self.sql.render(template), args).fetchall()

    def _write(self, search_id, statements, owner=None, durable=False):  # noqa: ANN001
        rendered = [(self.sql.render(sql), args) for sql, args in statements]
        if len(rendered) == 1:
            apply(self._db, rendered, search_id, owner)
            return
        with self._db:
            self._db.execute("BEGIN")
            apply(self._db, rendered, search_id, owner)

    def _commit(self, template, args=(), after_writes=False):  # noqa: ANN001
        return self._db.execute(self.sql.render(template), args).fetchall()

    def locked(self, key, work):  # noqa: ANN001 - SqlStore's
        # BEGIN IMMEDIATE takes the database's write lock: every key's, and other processes'.
        def run(template: str, args: tuple) -> list[tuple]:
            return self._db.execute(self.sql.render(template), args).fetchall()

        self._db.execute("BEGIN IMMEDIATE")
        try:
            out = work(run)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return out

    async def off_loop_locked(self, key, work):  # noqa: ANN001 - SqlStore's
        # On the loop, as every SQLite write here: the one connection is the loop's, and the
        # transaction takes tens of microseconds.
        return self.locked(key, work)


def open_store(target: str | Path, option: str = "--db") -> Any:
    """The store `target` names: a postgresql:// (or postgres://) URL is PostgreSQL
    (gemfinder.pg_store), anything else a SQLite file (":memory:" for none)."""
    if str(target).startswith(("postgresql://", "postgres://")):
        from gemfinder.pg_store import PgStore  # psycopg is loaded only when it is used

        return PgStore(str(target), option)
    return Store(target, option)


def _row(row: tuple) -> SearchRow:
    sid, request_id, state, spec, created, updated, progress, result, error = row
    return SearchRow(
        id=sid,
        request_id=request_id,
        state=state,
        spec=json.loads(spec),
        created=created,
        updated=updated,
        progress=Progress.from_json(json.loads(progress)) if progress else None,
        result=Result.from_json(json.loads(result)) if result else None,
        error=error,
    )


def _fence(owner: str | None) -> tuple[str, tuple]:
    """The condition (and its value) of a write only `owner` may make."""
    return (" AND owner = ?", (owner,)) if owner is not None else ("", ())


# The queries, each in one spelling for both databases (gemfinder.store_dialect fills the
# slots: `?` marks, `{now}`, `{in:...}`, `{rows:...}`, ...). INSERT ... SELECT ends its SELECT
# with a WHERE before ON CONFLICT: SQLite's parser needs it there.
CLAIMABLE = "(owner IS NULL OR owner = ? OR lease_until < {now})"
CREATE_SEARCH = (
    "INSERT INTO searches (id, request_id, state, spec, created, updated, owner, lease_until,"
    " provenance) VALUES (?, ?, 'pending', ?, ?, ?, ?, {now} + ?, ?) ON CONFLICT (id) DO NOTHING"
)
TOUCH_SEARCH = "UPDATE searches SET progress = COALESCE(?, progress), updated = ? WHERE id = ?"
# The events log (gemfinder.search.events). An event's number is decided before its write
# (SqlStore._next_seq), so the write is idempotent: run again, it finds its number taken by
# itself and adds nothing; the number is the search's largest plus one, as only the owner
# appends (fenced), from one writer, so numbers are dense and in commit order.
PUT_EVENT = (
    "INSERT INTO events (search_id, seq, type, state, progress, created)"
    " SELECT ?, ?, ?, ?, ?, ? WHERE {changed} ON CONFLICT (search_id, seq) DO NOTHING"
)
LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE search_id = ?"
# Up to a limit of events after each (search, number) asked: the number of each one's last
# first (an index range each), then the events up to it.
EVENTS_AFTER = (
    "WITH w AS MATERIALIZED (SELECT sid, since, COALESCE((SELECT seq FROM events"
    " WHERE search_id = r.sid AND seq > r.since ORDER BY seq LIMIT 1 OFFSET ?),"
    " 9223372036854775807) AS upto FROM {rows:sid text, since bigint})"
    " SELECT w.sid, w.since, e.seq, e.type, e.state, e.progress FROM w CROSS JOIN events e"
    " WHERE e.search_id = w.sid AND e.seq > w.since AND e.seq <= w.upto"
    " ORDER BY w.sid, w.since, e.seq"
)
# Recording how a search ended appends its FINISHED event, once (a retried write adds none).
FINISHED_EVENT = (
    "INSERT INTO events (search_id, seq, type, state, progress, created)"
    " SELECT id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE search_id = ?),"
    " 'finished', state, progress, ? FROM searches WHERE id = ? AND NOT EXISTS"
    " (SELECT 1 FROM events WHERE search_id = ? AND type = 'finished')"
)
# ... and prunes its PROGRESS events but the last (about 5 a second while it ran): a watch of
# an ended search still ends the same way, its round events, last progress and FINISHED.
PRUNE_EVENTS = (
    "DELETE FROM events WHERE search_id = ? AND type = 'progress' AND seq <"
    " (SELECT MAX(seq) FROM events WHERE search_id = ? AND type = 'progress')"
)
EVENT_COLUMNS = "seq, type, state, progress"
UPSERT_SNAPSHOT = (
    " ON CONFLICT (search_id) DO UPDATE SET data = excluded.data, updated = excluded.updated"
)
PUT_SNAPSHOT = "INSERT INTO snapshots (search_id, data, updated) VALUES (?, ?, ?)" + UPSERT_SNAPSHOT
PUT_OWN_SNAPSHOT = (
    "INSERT INTO snapshots (search_id, data, updated) SELECT ?, ?, ? WHERE EXISTS"
    " (SELECT 1 FROM searches WHERE id = ? AND owner = ?{share})" + UPSERT_SNAPSHOT
)
UPSERT_LEDGER = " ON CONFLICT (search_id, endpoint) DO UPDATE SET state = excluded.state"
PUT_LEDGER = (
    "INSERT INTO serving_ledgers (search_id, endpoint, state) SELECT ?, endpoint, state"
    " FROM {rows:endpoint text, state text} WHERE true" + UPSERT_LEDGER
)
PUT_OWN_LEDGER = (
    "INSERT INTO serving_ledgers (search_id, endpoint, state) SELECT ?, endpoint, state"
    " FROM {rows:endpoint text, state text}"
    " WHERE EXISTS (SELECT 1 FROM searches WHERE id = ? AND owner = ?{share})" + UPSERT_LEDGER
)
PUT_EVALS = (
    "INSERT INTO evals (key, reward, created) SELECT key, reward, ?"
    " FROM {rows:key text, reward int} WHERE true ON CONFLICT (key) DO NOTHING"
)
PUT_PULLS = (
    "INSERT INTO pulls (search_id, model, item, reward) SELECT sid, model, item, reward"
    " FROM {rows:sid text, model int, item int, reward int} WHERE true"
    " ON CONFLICT (search_id, model, item) DO UPDATE SET reward = excluded.reward"
    " WHERE pulls.reward < 0"
)
PUT_SKIPPED = (
    "INSERT INTO pulls (search_id, model, item, reward) SELECT ?, model, item, ?"
    " FROM {rows:model int, item int} WHERE true ON CONFLICT DO NOTHING"
)
PUT_SAMPLES = (
    f"INSERT INTO samples (search_id, {SAMPLE_COLUMNS}, created) SELECT ?, r.*, ? FROM"
    " {rows:model int, item int, key text, prompt_sha256 text, reward smallint,"
    " cached boolean, gem_check boolean, response text, extracted text, response_bytes int,"
    " extracted_bytes int} WHERE true ON CONFLICT DO NOTHING"
)


def event_of(seq: int, kind: str, state: str, progress: str | None) -> Event:
    data = Progress.from_json(json.loads(progress)) if progress else None
    return Event(kind, data, state, int(seq))


def _sample(row: Any) -> Sample:
    model, item, key, prompt, reward, cached, check, resp, ext, resp_bytes, ext_bytes = row
    return Sample(
        model, item, key, prompt, reward, bool(cached), bool(check), resp, ext, resp_bytes,
        ext_bytes,
    )  # fmt: skip


def update_columns(
    state: str | None,
    progress: Progress | None,
    result: Result | str | None,
    error: str | None,
) -> tuple[list[str], list[Any]]:
    """`col = ?` clauses and their values for an update of a search row: `updated` always,
    the others when given."""
    sets, args = ["updated = ?"], [time.time()]
    for column, value in (("state", state), ("error", error)):
        if value is not None:
            sets.append(f"{column} = ?")
            args.append(value)
    for column, typed in (("progress", progress), ("result", result)):
        if typed is not None:
            sets.append(f"{column} = ?")
            args.append(typed if isinstance(typed, str) else json.dumps(typed.to_json()))
    return sets, args
