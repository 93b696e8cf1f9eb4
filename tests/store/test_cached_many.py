"""The evaluation cache read a batch at a time (`cached_many`), on both stores: hits with their
rewards, misses absent, any number of keys (one query: the keys are one parameter), keys
that would break a statement built by hand read as data."""

from __future__ import annotations

from gemfinder.store import open_store

MANY = 1_000  # above SQLite's old limit of 999 bound parameters


def test_hits_carry_their_rewards_and_misses_are_absent(new_db):
    store = open_store(new_db("c.db"))
    store.create_search("s", None, {"t": 1})
    n = 2 * MANY + 7
    store.put_answers("s", [(f"k{j}", j % 50, j, j % 2) for j in range(n)])
    assert store.count_evals() == n  # on PostgreSQL also waits for the queued writes
    asked = [f"k{j}" for j in range(0, n, 3)] + [f"miss{j}" for j in range(MANY)]
    assert store.cached_many(asked) == {f"k{j}": j % 2 for j in range(0, n, 3)}
    assert store.cached_many([]) == {}
    assert store.cached_many(["miss", "k1", "k1"]) == {"k1": 1}  # a key asked twice
    store.close()


def test_hostile_keys_are_data(new_db):
    """Cache keys hold endpoint URLs and model ids a caller chose: quotes, placeholders,
    wildcards and SQL in a key must match that key only."""
    store = open_store(new_db("h.db"))
    store.create_search("s", None, {"t": 1})
    hostile = ["a'b", "%s", "$1", "?", "k%", "k_", "') OR 1=1 --", "x\\y", "💎", "é" * 300]
    store.put_answers("s", [(key, 0, j, 1) for j, key in enumerate(hostile)])
    store.put_answers("s", [("k0", 0, 99, 0)])  # "k%" and "k_" must not match it
    assert store.count_evals() == len(hostile) + 1
    assert store.cached_many(hostile) == dict.fromkeys(hostile, 1)
    assert store.cached_many(["kx", "k", "' OR ''='", "%"]) == {}
    assert store.cached_many(["k0"]) == {"k0": 0}
    store.close()
