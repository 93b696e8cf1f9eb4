"""SQLite (WAL) persistence: searches and their requests, scheduler snapshots, evaluation cache.

The pulls table keeps which items each model of a search was graded on, for paired
comparisons (the hidden-gem verdict) that survive a restart; a search's rows go once its result
(which holds the verdict) is stored. The evaluation cache is what makes
a query never paid twice: every graded answer is committed
before it is told to the scheduler, so a search resumed from an older snapshot re-asks lost
pulls and finds them here instead of at the endpoint. A cache key names what produced the
answer (the endpoint as the operator configured it, model, adapter, prompt, decoding:
search.spec.CacheKeys), so one caller's endpoint never answers for another's. One connection,
used from the event loop thread only; writes are short transactions. The schema is created and
upgraded on open by gemfinder.migrations.

Leases (docs/service.md, Replicas): a running search is owned by one replica (`owner`) until
`lease_until`, renewed by its owner; a replica claims a search only when it is free (no owner),
its own, or its lease has expired, in one atomic UPDATE. Writes that only the owner may make
(snapshot, progress, state, result) take the owner and are fenced: one that finds the search
owned by another replica raises LeaseLost and changes nothing. SQLite serves one machine, so
its lease times come from this process's clock. A cancel asked through any replica is a column
of the search (`request_cancel`), which the owner's renewal returns with its leases.

A path that cannot hold a database (missing directory, a directory, a file that is not SQLite)
is a UserError naming the option, and such a file is left untouched. `open_store` picks this
store or gemfinder.pg_store's PostgreSQL one (same methods) from what the option gives.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.migrations import migrate
from gemfinder.samples import COLUMNS as SAMPLE_COLUMNS
from gemfinder.samples import Sample
from gemfinder.search.events import Event
from gemfinder.search.values import Progress, Result

UNFINISHED = ("pending", "running")
ENDED = ("succeeded", "failed", "cancelled")
LOOKUP_CHUNK = 500  # keys per query of cached_many; SQLite allows 999 parameters before 3.32
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


class Store:
    def __init__(self, path: str | Path = ":memory:", option: str = "db") -> None:
        """Open (or create) the database at `path`; `option` names the setting that gave the
        path (e.g. "--store"), for the UserError raised when it cannot be used."""
        self.path = str(path)
        _check_path(self.path, option)
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
        self._db.close()

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
        try:
            self._db.execute(
                "INSERT INTO searches (id, request_id, state, spec, created, updated, owner,"
                " lease_until, provenance) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                (search_id, request_id, json.dumps(spec), now, now, owner, now + lease_s, made),
            )
        except sqlite3.IntegrityError as err:
            if request_id is not None and self.find_request(request_id) is not None:
                raise RequestTaken(request_id) from None
            raise err

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
        `result` may come as its JSON text already (search.manager encodes it off the loop)."""
        sets, args = update_columns("?", state, progress, result, error)
        fence = " AND owner = ?" if owner is not None else ""
        args += [search_id, *([owner] if owner is not None else [])]
        with self._db:
            self._db.execute("BEGIN")
            done = self._db.execute(
                f"UPDATE searches SET {', '.join(sets)} WHERE id = ?{fence}", args
            )
            if owner is not None and done.rowcount == 0:
                raise LeaseLost(search_id, owner)
            if state in ENDED:
                self._db.execute(
                    FINISHED_EVENT.format(m="?"), (search_id, time.time(), search_id, search_id)
                )
                self._db.execute(PRUNE_EVENTS.format(m="?"), (search_id, search_id))

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
        fence = " AND owner = ?" if owner is not None else ""
        with self._db:
            self._db.execute("BEGIN")
            done = self._db.execute(
                "UPDATE searches SET progress = COALESCE(?, progress), updated = ?"
                f" WHERE id = ?{fence}",
                (data, now, search_id, *([owner] if owner is not None else [])),
            )
            if done.rowcount == 0:
                if owner is not None:
                    raise LeaseLost(search_id, owner)
                return
            self._db.execute(
                NEXT_EVENT.format(m="?"), (search_id, kind, state, data, now, search_id)
            )

    def events_after(
        self, wanted: list[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[Event]]:
        """For each (search id, seq): up to `limit` events of that search after seq, in order;
        only the pairs that have some."""
        found = {}
        for search_id, after in wanted:
            rows = self._db.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE search_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (search_id, after, limit),
            ).fetchall()
            if rows:
                found[search_id, after] = [event_of(*r) for r in rows]
        return found

    def last_event(self, search_id: str) -> tuple[int, str] | None:
        """(seq, type) of the search's last event, or None before its first."""
        row = self._db.execute(
            "SELECT seq, type FROM events WHERE search_id = ? ORDER BY seq DESC LIMIT 1",
            (search_id,),
        ).fetchone()
        return (int(row[0]), row[1]) if row else None

    def get_search(self, search_id: str) -> SearchRow | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM searches WHERE id = ?", (search_id,)
        ).fetchone()
        return _row(row) if row else None

    def find_request(self, request_id: str) -> SearchRow | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM searches WHERE request_id = ?", (request_id,)
        ).fetchone()
        return _row(row) if row else None

    def list_searches(
        self,
        limit: int,
        after: tuple[float, str] | None = None,
        state: str | None = None,
        request_id: str | None = None,
    ) -> list[SearchRow]:
        """Newest first; `after` is the (created, id) of the last row of the previous page."""
        where, args = [], []
        if after is not None:
            where.append("(created < ? OR (created = ? AND id < ?))")
            args += [after[0], after[0], after[1]]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM searches {clause} ORDER BY created DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def unfinished(self) -> list[SearchRow]:
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM searches WHERE state IN (?, ?) ORDER BY created", UNFINISHED
        ).fetchall()
        return [_row(r) for r in rows]

    # leases ---------------------------------------------------------------------------------
    def claimable(self, owner: str, limit: int) -> list[tuple[str, str | None]]:
        """(id, current owner) of unfinished searches `owner` may claim, oldest first: a hint
        for `claim`, which decides."""
        rows = self._db.execute(
            "SELECT id, owner FROM searches WHERE state IN (?, ?)"
            " AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY created LIMIT ?",
            (*UNFINISHED, owner, time.time(), limit),
        ).fetchall()
        return [(sid, prev) for sid, prev in rows]

    def claim(self, search_id: str, owner: str, lease_s: float) -> SearchRow | None:
        """Take the lease of an unfinished search if it is free, ours, or expired; the row, or
        None when another replica holds it (or it has ended)."""
        now = time.time()
        row = self._db.execute(
            f"UPDATE searches SET owner = ?, lease_until = ? WHERE id = ? AND state IN (?, ?)"
            f" AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING {COLUMNS}",
            (owner, now + lease_s, search_id, *UNFINISHED, owner, now),
        ).fetchall()
        return _row(row[0]) if row else None

    def renew(self, owner: str, lease_s: float) -> dict[str, bool]:
        """Extend every lease `owner` holds on an unfinished search: {id: cancel requested} of
        the searches it still holds."""
        rows = self._db.execute(
            "UPDATE searches SET lease_until = ? WHERE owner = ? AND state IN (?, ?)"
            " RETURNING id, cancel_requested IS NOT NULL",
            (time.time() + lease_s, owner, *UNFINISHED),
        ).fetchall()
        return {sid: bool(cancel) for sid, cancel in rows}

    def request_cancel(self, search_id: str) -> bool:
        """Record that the search is to be cancelled (CancelSearch on any replica; its owner
        reads it at its next renewal); False when it has ended (or does not exist)."""
        return (
            self._db.execute(
                "UPDATE searches SET cancel_requested = COALESCE(cancel_requested, ?)"
                " WHERE id = ? AND state IN (?, ?)",
                (time.time(), search_id, *UNFINISHED),
            ).rowcount
            > 0
        )

    def release(self, owner: str) -> int:
        """Give up every lease `owner` holds (graceful shutdown): others may claim at once."""
        return self._db.execute(
            "UPDATE searches SET owner = NULL, lease_until = ? WHERE owner = ? AND state IN (?, ?)",
            (time.time(), owner, *UNFINISHED),
        ).rowcount

    # snapshots ------------------------------------------------------------------------------
    def save_snapshot(self, search_id: str, data: bytes, owner: str | None = None) -> None:
        """With `owner`, fenced as update_search is."""
        if owner is None:
            self._db.execute(
                "INSERT INTO snapshots (search_id, data, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (search_id) DO UPDATE SET data = excluded.data,"
                " updated = excluded.updated",
                (search_id, data, time.time()),
            )
            return
        done = self._db.execute(
            "INSERT INTO snapshots (search_id, data, updated) SELECT ?, ?, ?"
            " WHERE EXISTS (SELECT 1 FROM searches WHERE id = ? AND owner = ?)"
            " ON CONFLICT (search_id) DO UPDATE SET data = excluded.data,"
            " updated = excluded.updated",
            (search_id, data, time.time(), search_id, owner),
        )
        if done.rowcount == 0:
            raise LeaseLost(search_id, owner)

    def load_snapshot(self, search_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM snapshots WHERE search_id = ?", (search_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    # serving-cost ledger (migration 9) -------------------------------------------------------
    def save_serving_ledger(
        self, search_id: str, states: dict[str, Any], owner: str | None = None
    ) -> None:
        """The serving-cost ledger of the endpoints `states` names ({endpoint: SlotLedger
        state}), which a resume continues from; with `owner`, fenced as save_snapshot is."""
        if not states:
            return
        rows = [(search_id, url, json.dumps(state)) for url, state in states.items()]
        upsert = " ON CONFLICT (search_id, endpoint) DO UPDATE SET state = excluded.state"
        with self._db:  # one transaction: all the rows or (lease lost) none
            self._db.execute("BEGIN")
            if owner is None:
                self._db.executemany(
                    "INSERT INTO serving_ledgers (search_id, endpoint, state) VALUES (?, ?, ?)"
                    + upsert,
                    rows,
                )
                return
            done = self._db.executemany(
                "INSERT INTO serving_ledgers (search_id, endpoint, state) SELECT ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM searches WHERE id = ? AND owner = ?)" + upsert,
                [(*row, search_id, owner) for row in rows],
            )
            if done.rowcount < len(rows):
                raise LeaseLost(search_id, owner)

    def serving_ledger(self, search_id: str) -> dict[str, Any]:
        """{endpoint: SlotLedger state} as last saved (empty: none)."""
        rows = self._db.execute(
            "SELECT endpoint, state FROM serving_ledgers WHERE search_id = ?", (search_id,)
        )
        return {url: json.loads(state) for url, state in rows}

    # evaluation cache -----------------------------------------------------------------------
    def cached_many(self, keys: list[str]) -> dict[str, int]:
        """{key: reward} of the `keys` in the evaluation cache (a key not cached is absent): a
        whole batch of the scheduler's pulls in one call, queried in chunks of LOOKUP_CHUNK
        (below SQLite's limit on bound parameters)."""
        found: dict[str, int] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, reward FROM evals WHERE key IN ({marks})", chunk)
            found.update((key, int(reward)) for key, reward in rows)
        return found

    def put_answers(self, search_id: str, answers: list[tuple[str, int, int, int]]) -> None:
        """Record graded pulls (cache key, model, item, reward) of a search in one transaction.

        A pull re-told after a resume is ignored: the key and the pull are already there. A
        grade replaces a pull marked skipped (`put_skipped`).
        """
        if not answers:
            return
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO evals (key, reward, created) VALUES (?, ?, ?)",
                [(key, reward, now) for key, _, _, reward in answers],
            )
            self._db.executemany(
                "INSERT INTO pulls (search_id, model, item, reward) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (search_id, model, item) DO UPDATE SET reward = excluded.reward"
                " WHERE pulls.reward < 0",
                [(search_id, model, item, reward) for _, model, item, reward in answers],
            )

    def put_skipped(self, search_id: str, pulls: list[tuple[int, int]]) -> None:
        """Mark pulls (model, item) that failed on every attempt and were skipped: a model's
        evidence lost to failures, for the recommendation rule (search.runner)."""
        if not pulls:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO pulls (search_id, model, item, reward) VALUES (?, ?, ?, ?)",
                [(search_id, model, item, SKIPPED) for model, item in pulls],
            )

    def skipped(self, search_id: str) -> dict[int, int]:
        """{model: pulls skipped after failing on every attempt} of a search."""
        rows = self._db.execute(
            "SELECT model, COUNT(*) FROM pulls WHERE search_id = ? AND reward < 0 GROUP BY model",
            (search_id,),
        )
        return {int(model): int(count) for model, count in rows}

    def outcomes(self, search_id: str, models: list[int]) -> dict[int, dict[int, int]]:
        """{model: {item: reward}} of the graded pulls of `models` in a search."""
        out: dict[int, dict[int, int]] = {m: {} for m in models}
        marks = ", ".join("?" * len(models))
        rows = self._db.execute(
            "SELECT model, item, reward FROM pulls"
            f" WHERE search_id = ? AND reward >= 0 AND model IN ({marks})",
            (search_id, *models),
        )
        for model, item, reward in rows:
            out[model][item] = reward
        return out

    def task_counts(
        self, search_id: str, item_tasks: list[int]
    ) -> dict[int, dict[int, tuple[int, int]]]:
        """{model: {task: (graded pulls, successes)}} of a search, `item_tasks[i]` being item
        i's task: counted here, so a search of 500,000 answers hands back one row per model
        and task (0.4 s rather than 2.7 s through Python at 5,000 models x 100 answers)."""
        with self._db:
            self._db.execute("BEGIN")
            # A temporary table lives in the connection's own temp database: no write lock.
            self._db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS item_tasks"
                " (item INTEGER PRIMARY KEY, task INTEGER NOT NULL)"
            )
            self._db.execute("DELETE FROM item_tasks")
            self._db.executemany("INSERT INTO item_tasks VALUES (?, ?)", enumerate(item_tasks))
            rows = self._db.execute(
                "SELECT p.model, t.task, COUNT(*), SUM(p.reward) FROM pulls p"
                " JOIN item_tasks t ON t.item = p.item WHERE p.search_id = ? AND p.reward >= 0"
                " GROUP BY p.model, t.task",
                (search_id,),
            ).fetchall()
            self._db.execute("DELETE FROM item_tasks")
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for model, task, n, hits in rows:
            out.setdefault(int(model), {})[int(task)] = (int(n), int(hits))
        return out

    def drop_pulls(self, search_id: str) -> None:
        """Forget the graded pulls of an ended search: its stored result already holds what the
        verdict needed, and the evaluation cache keeps the answers themselves."""
        with self._db:
            self._db.execute("DELETE FROM pulls WHERE search_id = ?", (search_id,))

    def count_evals(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM evals").fetchone()[0])

    # samples log (gemfinder.samples) ---------------------------------------------------------
    def put_samples(self, search_id: str, samples: list[Sample]) -> None:
        """Log graded queries; a pull logged before (re-told after a resume) keeps its first."""
        if not samples:
            return
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR IGNORE INTO samples (search_id, {SAMPLE_COLUMNS}, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(search_id, *s.row(), now) for s in samples],
            )

    def samples(self, search_id: str, after: tuple[int, int], limit: int) -> list[Sample]:
        """Up to `limit` samples of a search after (model, item) `after`, in that order."""
        rows = self._db.execute(
            f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE search_id = ?"
            " AND (model > ? OR (model = ? AND item > ?)) ORDER BY model, item LIMIT ?",
            (search_id, after[0], after[0], after[1], limit),
        ).fetchall()
        return [_sample(r) for r in rows]

    def original_samples(self, keys: list[str]) -> dict[str, tuple[str, Sample]]:
        """{cache key: (search id, sample)} of the queries that produced these cached answers
        (the earliest logged, when two searches asked at once); keys without one are left out."""
        out: dict[str, tuple[str, Sample]] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                f"SELECT search_id, {SAMPLE_COLUMNS} FROM samples WHERE cached = 0 AND key IN"
                f" ({', '.join('?' * len(chunk))}) ORDER BY created DESC, search_id DESC",
                chunk,
            )
            for sid, *row in rows:  # the earliest last, so it stays
                out[row[2]] = (sid, _sample(row))
        return out

    def provenance(self, search_id: str) -> dict[str, Any] | None:
        """What produced a search (None: stored before provenance was recorded)."""
        row = self._db.execute(
            "SELECT provenance FROM searches WHERE id = ?", (search_id,)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None


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


# The events log (gemfinder.search.events), the same SQL for both stores (`{m}`: the driver's
# placeholder). The next number is the search's largest plus one: only the owner appends
# (fenced), from one writer, so numbers are dense and in commit order.
NEXT_EVENT = (
    "INSERT INTO events (search_id, seq, type, state, progress, created)"
    " SELECT {m}, COALESCE(MAX(seq), 0) + 1, {m}, {m}, {m}, {m} FROM events WHERE search_id = {m}"
)
# Recording how a search ended appends its FINISHED event, once (a retried write adds none).
FINISHED_EVENT = (
    "INSERT INTO events (search_id, seq, type, state, progress, created)"
    " SELECT id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE search_id = {m}),"
    " 'finished', state, progress, {m} FROM searches WHERE id = {m} AND NOT EXISTS"
    " (SELECT 1 FROM events WHERE search_id = {m} AND type = 'finished')"
)
# ... and prunes its PROGRESS events but the last (about 5 a second while it ran): a watch of
# an ended search still ends the same way, its round events, last progress and FINISHED.
PRUNE_EVENTS = (
    "DELETE FROM events WHERE search_id = {m} AND type = 'progress' AND seq <"
    " (SELECT MAX(seq) FROM events WHERE search_id = {m} AND type = 'progress')"
)
EVENT_COLUMNS = "seq, type, state, progress"


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
    mark: str,
    state: str | None,
    progress: Progress | None,
    result: Result | str | None,
    error: str | None,
) -> tuple[list[str], list[Any]]:
    """`col = <mark>` clauses and their values for an update of a search row (both stores;
    `mark` is the driver's placeholder): `updated` always, the others when given."""
    sets, args = [f"updated = {mark}"], [time.time()]
    for column, value in (("state", state), ("error", error)):
        if value is not None:
            sets.append(f"{column} = {mark}")
            args.append(value)
    for column, typed in (("progress", progress), ("result", result)):
        if typed is not None:
            sets.append(f"{column} = {mark}")
            args.append(typed if isinstance(typed, str) else json.dumps(typed.to_json()))
    return sets, args
