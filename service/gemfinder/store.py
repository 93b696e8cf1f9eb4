"""SQLite (WAL) persistence: searches and their requests, scheduler snapshots, evaluation cache.

The pulls table keeps which items each model of a search was graded on, for paired
comparisons (the hidden-gem verdict) that survive a restart; a search's rows go once its result
(which holds the verdict) is stored. The evaluation cache is what makes
a query never paid twice: every graded answer is committed
before it is told to the scheduler, so a search resumed from an older snapshot re-asks lost
pulls and finds them here instead of at the endpoint. One connection, used from the event loop
thread only; writes are short transactions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    progress TEXT,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS searches_created ON searches (created DESC, id DESC);
CREATE TABLE IF NOT EXISTS snapshots (
    search_id TEXT PRIMARY KEY REFERENCES searches (id) ON DELETE CASCADE,
    data BLOB NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pulls (
    search_id TEXT NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
    model INTEGER NOT NULL,
    item INTEGER NOT NULL,
    reward INTEGER NOT NULL,
    PRIMARY KEY (search_id, model, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals (
    key TEXT PRIMARY KEY,
    reward INTEGER NOT NULL,
    created REAL NOT NULL
);
"""

UNFINISHED = ("pending", "running")


@dataclass
class SearchRow:
    id: str
    request_id: str | None
    state: str
    spec: dict[str, Any]
    created: float
    updated: float
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None


class Store:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        # isolation_level=None: explicit transactions only, so each write commits at once.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (not a power loss): enough for resume.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # searches -------------------------------------------------------------------------------
    def create_search(self, search_id: str, request_id: str | None, spec: dict[str, Any]) -> None:
        now = time.time()
        self._db.execute(
            "INSERT INTO searches (id, request_id, state, spec, created, updated)"
            " VALUES (?, ?, 'pending', ?, ?, ?)",
            (search_id, request_id, json.dumps(spec), now, now),
        )

    def update_search(
        self,
        search_id: str,
        *,
        state: str | None = None,
        progress: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        sets, args = ["updated = ?"], [time.time()]
        for column, value in (("state", state), ("error", error)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        for column, value in (("progress", progress), ("result", result)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(json.dumps(value))
        self._db.execute(f"UPDATE searches SET {', '.join(sets)} WHERE id = ?", (*args, search_id))

    def get_search(self, search_id: str) -> SearchRow | None:
        row = self._db.execute("SELECT * FROM searches WHERE id = ?", (search_id,)).fetchone()
        return _row(row) if row else None

    def find_request(self, request_id: str) -> SearchRow | None:
        row = self._db.execute(
            "SELECT * FROM searches WHERE request_id = ?", (request_id,)
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
            f"SELECT * FROM searches {clause} ORDER BY created DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def unfinished(self) -> list[SearchRow]:
        rows = self._db.execute(
            "SELECT * FROM searches WHERE state IN (?, ?) ORDER BY created", UNFINISHED
        ).fetchall()
        return [_row(r) for r in rows]

    # snapshots ------------------------------------------------------------------------------
    def save_snapshot(self, search_id: str, data: bytes) -> None:
        self._db.execute(
            "INSERT INTO snapshots (search_id, data, updated) VALUES (?, ?, ?)"
            " ON CONFLICT (search_id) DO UPDATE SET data = excluded.data,"
            " updated = excluded.updated",
            (search_id, data, time.time()),
        )

    def load_snapshot(self, search_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM snapshots WHERE search_id = ?", (search_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    # evaluation cache -----------------------------------------------------------------------
    def cached(self, key: str) -> int | None:
        row = self._db.execute("SELECT reward FROM evals WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else None

    def put_answers(self, search_id: str, answers: list[tuple[str, int, int, int]]) -> None:
        """Record graded pulls (cache key, model, item, reward) of a search in one transaction.

        A pull re-told after a resume is ignored: the key and the pull are already there.
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
                "INSERT OR IGNORE INTO pulls (search_id, model, item, reward) VALUES (?, ?, ?, ?)",
                [(search_id, model, item, reward) for _, model, item, reward in answers],
            )

    def outcomes(self, search_id: str, models: list[int]) -> dict[int, dict[int, int]]:
        """{model: {item: reward}} of the graded pulls of `models` in a search."""
        out: dict[int, dict[int, int]] = {m: {} for m in models}
        marks = ", ".join("?" * len(models))
        rows = self._db.execute(
            f"SELECT model, item, reward FROM pulls WHERE search_id = ? AND model IN ({marks})",
            (search_id, *models),
        )
        for model, item, reward in rows:
            out[model][item] = reward
        return out

    def drop_pulls(self, search_id: str) -> None:
        """Forget the graded pulls of an ended search: its stored result already holds what the
        verdict needed, and the evaluation cache keeps the answers themselves."""
        with self._db:
            self._db.execute("DELETE FROM pulls WHERE search_id = ?", (search_id,))

    def count_evals(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM evals").fetchone()[0])


def _row(row: tuple) -> SearchRow:
    sid, request_id, state, spec, created, updated, progress, result, error = row
    return SearchRow(
        id=sid,
        request_id=request_id,
        state=state,
        spec=json.loads(spec),
        created=created,
        updated=updated,
        progress=json.loads(progress) if progress else None,
        result=json.loads(result) if result else None,
        error=error,
    )
