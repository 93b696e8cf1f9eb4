"""`outcomes` reads the graded pulls of any number of models in one call, on both stores: the
certificate of a fixed-budget search reads every model of its pool at once, and a pool larger
than SQLite's limit on bound parameters (999 before SQLite 3.32, 32,766 since; builds may set
another) must not fail the search at its end."""

from __future__ import annotations

import sqlite3

from gemfinder.store import Store, open_store


def test_outcomes_of_a_pool_above_sqlites_parameter_limit(new_db):
    store = open_store(new_db("o.db"))
    try:
        if isinstance(store, Store):  # SQLite's default limit before 3.32, kept by some builds
            store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        store.create_search("s", None, {"t": 1})
        models = 5_000
        graded = [(f"k{m}", m, m % 7, m % 2) for m in range(0, models, 3)]
        store.put_answers("s", graded)
        store.put_skipped("s", [(1, 0)])  # skipped: not an outcome
        out = store.outcomes("s", list(range(models)))
        assert len(out) == models
        assert out == {m: ({m % 7: m % 2} if m % 3 == 0 else {}) for m in range(models)}
        assert store.outcomes("s", [3, 4, 3]) == {3: {3: 1}, 4: {}}  # a model asked twice
        assert store.outcomes("s", []) == {}
    finally:
        store.close()
