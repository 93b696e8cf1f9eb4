"""Versioned schema migrations: a store of every earlier version opens, keeps its searches (and
their results), resumes its unfinished ones, and serves none of its unattributed cache rows."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from gemfinder import samples
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.migrations import LATEST, MIGRATIONS, Migration, SchemaTooNew, migrate
from gemfinder.oracles import ReplayOracle
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Result
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store

from tests.fleet_support import make_items

SEARCHES = """
CREATE TABLE searches (
    id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state TEXT NOT NULL, spec TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, progress TEXT, result TEXT, error TEXT{extra}
);
CREATE INDEX searches_created ON searches (created DESC, id DESC);
CREATE TABLE snapshots (
    search_id TEXT PRIMARY KEY REFERENCES searches (id) ON DELETE CASCADE,
    data BLOB NOT NULL, updated REAL NOT NULL
);
CREATE TABLE evals (key TEXT PRIMARY KEY, reward INTEGER NOT NULL, created REAL NOT NULL);
"""
PULLS = """
CREATE TABLE pulls (
    search_id TEXT NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
    model INTEGER NOT NULL, item INTEGER NOT NULL, reward INTEGER NOT NULL,
    PRIMARY KEY (search_id, model, item)
) WITHOUT ROWID;
"""


def _by_migrations(version: int):
    def build(db: sqlite3.Connection) -> None:
        migrate(db, MIGRATIONS[:version])

    return build


# The layouts released stores can have, by the version they record (PRAGMA user_version):
# written as those releases wrote them, not by today's migrations.
LAYOUTS = {
    "v0-first-release": (0, SEARCHES.format(extra="")),  # no pulls table yet
    "v0-before-this-change": (0, SEARCHES.format(extra="") + PULLS),
    "v1-spec-digest": (1, SEARCHES.format(extra=", spec_hash TEXT") + PULLS),
    **{f"v{v}": (v, _by_migrations(v)) for v in range(2, LATEST)},
}


def test_every_earlier_version_has_a_layout():
    assert {version for version, _ in LAYOUTS.values()} == set(range(LATEST))


def _pool():
    items = make_items(30, tasks=("mmlu",))
    rng = np.random.default_rng(3)
    acc = np.linspace(0.3, 0.9, 6)
    correct = (rng.random((6, len(items))) < acc[:, None]).astype(np.uint8)
    candidates = [Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}") for k in range(6)]
    matrix = CorrectnessMatrix(correct, [c.model_id for c in candidates], [it.id for it in items])
    spec = SearchSpec(candidates, items, budget=90, seed=4)
    spec.validate()
    return spec, matrix


def _old_store(path, layout: str, spec: SearchSpec) -> dict:
    """A store as an older gemfinder left it: a finished search with its result, an unfinished
    one halfway (snapshot, pulls) and cache rows; returns the finished search's result."""
    version, build = LAYOUTS[layout]
    db = sqlite3.connect(path, isolation_level=None)
    if callable(build):
        build(db)
    else:
        db.executescript(build)
    db.execute(f"PRAGMA user_version = {version}")
    columns = {r[1] for r in db.execute("PRAGMA table_info(searches)")}
    digest = {"spec_hash": "0" * 64} if "spec_hash" in columns else {}
    result = {"recommended_model_id": "m5", "queries_spent": 90, "ranking": [{"model_id": "m5"}]}
    sched = spec.scheduler()
    pulls = sched.ask(40)
    for model, item in pulls:
        sched.tell(model, item, bool(item % 2))
    rows = [
        ("done", "r1", "succeeded", 1.0, json.dumps(result)),
        ("half", "r2", "running", 2.0, None),
    ]
    for sid, rid, state, created, res in rows:
        values = {
            "id": sid, "request_id": rid, "state": state, "spec": json.dumps(spec.to_dict()),
            "created": created, "updated": created, "result": res, **digest,
        }  # fmt: skip
        names = ", ".join(values)
        db.execute(
            f"INSERT INTO searches ({names}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
    db.execute("INSERT INTO snapshots VALUES ('half', ?, 2.0)", (sched.snapshot(),))
    if "pulls" in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}:
        db.executemany(
            "INSERT INTO pulls VALUES ('half', ?, ?, ?)", [(m, i, i % 2) for m, i in pulls]
        )
    db.executemany("INSERT INTO evals VALUES (?, 1, 1.0)", [(f"k{n}",) for n in range(5)])
    db.close()
    return result


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_a_store_of_an_earlier_version_opens_keeps_its_searches_and_resumes(tmp_path, layout):
    spec, matrix = _pool()
    path = tmp_path / "old.db"
    result = _old_store(path, layout, spec)
    store = Store(path)
    version = store._db.execute("PRAGMA user_version").fetchone()[0]
    assert version == LATEST
    columns = [r[1] for r in store._db.execute("PRAGMA table_info(searches)")]
    assert "spec_hash" not in columns
    assert {"owner", "lease_until"} <= set(columns)  # leases (migration 4)
    # Results of ended searches load as they were stored.
    done = store.get_search("done")
    assert done.state == "succeeded" and done.result == Result.from_json(result)
    assert store.find_request("r1").id == "done"
    assert [r.id for r in store.list_searches(10)] == ["half", "done"]
    # Cache rows whose endpoint cannot be known (written before version 3) are gone; nothing
    # else is.
    assert store.count_evals() == (5 if LAYOUTS[layout][0] >= 3 else 0)
    # The unfinished search resumes from its snapshot and finishes.
    assert [r.id for r in store.unfinished()] == ["half"]
    manager = SearchManager(store, ReplayOracle(matrix))
    assert await manager.resume_all() == ["half"]
    row = await manager.wait("half")
    assert row.state == "succeeded", row.error
    assert row.result.queries_spent <= spec.budget
    assert store.count_evals() > 0  # answers of the resumed search, under the new keys
    # Samples log (migration 5): the search stored before has no provenance and no samples;
    # the resumed one logs what it asks from now on (its pulls before the restart stay unlogged).
    assert "provenance" in columns
    old_lines = list(samples.export(store, "done"))
    assert old_lines[0]["provenance"] is None and len(old_lines) == 1
    resumed = list(samples.export(store, "half"))[1:]
    assert 0 < len(resumed) <= row.result.queries_spent
    assert all(x["response"] is None and x["reward"] in (0, 1) for x in resumed)  # a matrix
    await manager.close()
    store.close()
    # Opening again finds nothing to do.
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db) == (LATEST, LATEST)
    db.close()


def test_a_newer_store_is_refused_and_left_as_it_is(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    with pytest.raises(UserError, match=f"--db.*newer than this gemfinder's {LATEST}"):
        Store(path, option="--db")
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1
    with pytest.raises(SchemaTooNew):
        migrate(db)
    db.close()


def test_a_failing_migration_changes_nothing(tmp_path):
    """All pending migrations and the version number commit together, or not at all."""
    path = tmp_path / "old.db"
    spec, _ = _pool()
    _old_store(path, "v1-spec-digest", spec)
    broken = Migration(LATEST + 1, "fails halfway", ("CREATE TABLE extra (a)", "NOT SQL"))
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, (*MIGRATIONS, broken))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "extra" not in tables
    assert "spec_hash" in {r[1] for r in db.execute("PRAGMA table_info(searches)")}
    assert db.execute("SELECT COUNT(*) FROM evals").fetchone()[0] == 5
    assert not db.in_transaction
    db.close()
    assert Store(path).get_search("done").state == "succeeded"  # the real list still applies


def test_migrations_must_be_numbered_in_order():
    swapped = (MIGRATIONS[1], MIGRATIONS[0])
    with pytest.raises(ValueError, match="numbered 1, 2"):
        migrate(sqlite3.connect(":memory:", isolation_level=None), swapped)


def test_a_new_store_starts_at_the_latest_version():
    store = Store()
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == LATEST
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
    assert {"searches", "snapshots", "pulls", "evals", "samples"} <= tables
    store.close()
