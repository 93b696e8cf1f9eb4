"""PostgreSQL schema migrations on a real server: from an empty database and from every step
PG_MIGRATIONS defines; all or nothing; replicas starting together migrate once; a newer or an
unknown version is refused and left alone; and the schema is the SQLite store's, column for
column, at the same version number."""

from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np
import psycopg
import pytest
from gemfinder import samples
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.migrations import LATEST, PG, PG_MIGRATIONS, Migration, migrate
from gemfinder.oracles import ReplayOracle
from gemfinder.pg_store import PgStore
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store

from tests.fleet_support import make_items


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _version(url: str) -> int:
    with _connect(url) as conn:
        return PG.read_version(conn)


def _pool():
    items = make_items(30, tasks=("mmlu",))
    rng = np.random.default_rng(3)
    correct = (rng.random((6, len(items))) < np.linspace(0.3, 0.9, 6)[:, None]).astype(np.uint8)
    candidates = [Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}") for k in range(6)]
    matrix = CorrectnessMatrix(correct, [c.model_id for c in candidates], [it.id for it in items])
    spec = SearchSpec(candidates, items, budget=90, seed=4)
    spec.validate()
    return spec, matrix


# Every state a database can be in: empty, or left by each step of the list.
STEPS = [0, *(m.version for m in PG_MIGRATIONS)]


@pytest.mark.parametrize("version", STEPS)
async def test_a_database_of_every_step_opens_keeps_its_searches_and_resumes(postgres, version):
    spec, matrix = _pool()
    url = postgres.new_database()
    if version:
        with _connect(url) as conn:
            upto = [m for m in PG_MIGRATIONS if m.version <= version]
            assert migrate(conn, upto, PG) == (0, version)
            # A search halfway at that step, written in the baseline's columns (a migration
            # that changes them must keep this insert working, or branch on `version`).
            sched = spec.scheduler()
            pulls = sched.ask(40)
            for model, item in pulls:
                sched.tell(model, item, bool(item % 2))
            conn.execute(
                "INSERT INTO searches (id, request_id, state, spec, created, updated)"
                " VALUES ('half', 'r2', 'running', %s, 2.0, 2.0)",
                (json.dumps(spec.to_dict()),),
            )
            conn.execute("INSERT INTO snapshots VALUES ('half', %s, 2.0)", (sched.snapshot(),))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pulls VALUES ('half', %s, %s, %s)",
                    [(m, i, i % 2) for m, i in pulls],
                )
    store = PgStore(url)
    try:
        assert _version(url) == LATEST
        if version:
            assert [r.id for r in store.unfinished()] == ["half"]
            manager = SearchManager(store, ReplayOracle(matrix))
            assert await manager.resume_all() == ["half"]
            row = await manager.wait("half")
            assert row.state == "succeeded", row.error
            assert row.result.queries_spent <= spec.budget
            # Samples log (migration 5): what the resumed search asked from now on is logged.
            lines = list(samples.export(store, "half"))
            assert lines[0]["provenance"] is None  # stored before provenance was recorded
            assert 0 < len(lines) - 1 <= row.result.queries_spent
            await manager.close()
        else:
            assert store.unfinished() == [] and store.count_evals() == 0
    finally:
        store.close()
    with _connect(url) as conn:  # opening again finds nothing to do
        assert migrate(conn, PG_MIGRATIONS, PG) == (LATEST, LATEST)


def test_a_newer_database_is_refused_and_left_as_it_is(postgres):
    url = postgres.new_database()
    PgStore(url).close()
    with _connect(url) as conn:
        PG.write_version(conn, LATEST + 1)
    with pytest.raises(UserError, match=f"--db.*newer than this gemfinder's {LATEST}"):
        PgStore(url, "--db")
    assert _version(url) == LATEST + 1


def test_a_version_below_the_baseline_is_refused(postgres):
    """PostgreSQL support began at the baseline: a lower number was never written by us."""
    url = postgres.new_database()
    with _connect(url) as conn:
        PG.write_version(conn, PG_MIGRATIONS[0].version - 1)
    with pytest.raises(UserError, match="--db.*predates version"):
        PgStore(url, "--db")


def test_a_failing_migration_changes_nothing(postgres):
    url = postgres.new_database()
    PgStore(url).close()
    with _connect(url) as conn:
        conn.execute("INSERT INTO evals VALUES ('k', 1, 1.0)")
        broken = Migration(LATEST + 1, "fails halfway", ("CREATE TABLE extra (a int)", "NOT SQL"))
        with pytest.raises(psycopg.errors.SyntaxError):
            migrate(conn, (*PG_MIGRATIONS, broken), PG)
        assert PG.read_version(conn) == LATEST
        assert conn.execute("SELECT to_regclass('extra')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM evals").fetchone()[0] == 1
    store = PgStore(url)  # the real list still applies
    assert store.cached_many(["k"]) == {"k": 1}
    store.close()


def test_replicas_starting_together_migrate_once(postgres):
    """Several gemfinders opening one empty database at once: the advisory lock lets one
    create the schema; the others wait, then find nothing to do."""
    url = postgres.new_database()
    found, errors = [], []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            with _connect(url) as conn:
                barrier.wait()
                found.append(migrate(conn, PG_MIGRATIONS, PG)[0])
        except Exception as err:  # reported below: a thread's exception is otherwise lost
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(found) == [0, LATEST, LATEST, LATEST]


def _sqlite_columns() -> dict[str, list[str]]:
    store = Store()
    db: sqlite3.Connection = store._db
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    store.close()
    return out


def test_the_schema_is_the_sqlite_stores_at_the_same_version(postgres):
    url = postgres.new_database()
    PgStore(url).close()
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> 'gemfinder_schema'"
            " ORDER BY table_name, ordinal_position"
        ).fetchall()
    pg: dict[str, list[str]] = {}
    for table, column in rows:
        pg.setdefault(table, []).append(column)
    assert pg == _sqlite_columns()
    assert PG_MIGRATIONS[-1].version == LATEST
