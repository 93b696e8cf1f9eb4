"""The native scheduler through its Python binding: protocol, errors, ranking, snapshots."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from gemfinder import _core
from hypothesis import given, settings
from hypothesis import strategies as st


def run(scheduler: _core.Scheduler, correct: np.ndarray, fail_every: int = 0) -> int:
    """Answer every pull from `correct`; fail every `fail_every`-th answer. Returns asks."""
    asks, count = 0, 0
    while pulls := scheduler.ask(8):
        asks += 1
        for model, item in pulls:
            count += 1
            if fail_every and count % fail_every == 0:
                scheduler.tell_failed(model, item)
            else:
                scheduler.tell(model, item, bool(correct[model, item]))
    return asks


def pool(k: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 0.8, size=k)
    return (rng.random((k, n)) < p[:, None]).astype(np.uint8)


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from([a for a in _core.ALGORITHMS if a not in ("random", "best_base")]),
    k=st.integers(2, 30),
    n=st.integers(2, 40),
    per_model=st.floats(1.0, 12.0),
    seed=st.integers(0, 2**32),
    fail_every=st.sampled_from([0, 3, 7]),
)
def test_budget_is_never_exceeded_and_seeds_repeat(algorithm, k, n, per_model, seed, fail_every):
    correct = pool(k, n, seed)
    budget = max(_core.min_budget(algorithm, k, n), int(per_model * k))
    a = _core.Scheduler(algorithm, k, n, budget, seed)
    run(a, correct, fail_every)
    assert a.finished and a.spent <= budget
    b = _core.Scheduler(algorithm, k, n, budget, seed)
    run(b, correct, fail_every)
    assert a.recommendation == b.recommendation
    assert [r.model for r in a.ranking()] == [r.model for r in b.ranking()]


def test_ranking_puts_the_recommendation_first_with_intervals():
    correct = pool(16, 50, 1)
    s = _core.Scheduler("sh_correlated", 16, 50, 16 * 20, 3)
    run(s, correct)
    ranking = s.ranking()
    assert [r.rank for r in ranking] == list(range(1, 17))
    assert ranking[0].model == s.recommendation
    assert ranking[0].eliminated_in_round is None
    for r in ranking:
        assert r.seen > 0 and 0 <= r.lower <= r.mean <= r.upper <= 1
    # Later-eliminated models rank above earlier-eliminated ones.
    rounds = [r.eliminated_in_round for r in ranking[1:]]
    assert rounds == sorted(rounds, reverse=True)


def test_snapshot_restores_mid_search_and_finishes_the_same():
    correct = pool(40, 60, 5)
    whole = _core.Scheduler("gem", 40, 60, 40 * 15, 11, params={"first_cut": 10})
    run(whole, correct)
    part = _core.Scheduler("gem", 40, 60, 40 * 15, 11, params={"first_cut": 10})
    lost = part.ask(30)[:5]  # handed out; answers lost with the process
    for model, item in part.ask(30):
        part.tell(model, item, bool(correct[model, item]))
    restored = _core.Scheduler.restore(part.snapshot())
    assert set(lost) <= set(restored.in_flight_pulls())
    assert restored.release_in_flight() == part.in_flight
    run(restored, correct)
    assert restored.recommendation == whole.recommendation
    assert restored.spent == whole.spent


@pytest.mark.parametrize(
    ("kwargs", "kind", "field"),
    [
        (dict(algorithm="nope"), "unknown_algorithm", "algorithm"),
        (dict(n_models=0), "invalid_argument", "n_models"),
        (dict(budget=10), "budget_too_small", "budget"),
        (dict(params={"first_cut": 0.5}), "invalid_argument", "params.first_cut"),
        (dict(params={"bogus": 1.0}), "invalid_argument", "params.bogus"),
        (dict(params={"max_attempts": 1e300}), "invalid_argument", "params.max_attempts"),
        (
            dict(algorithm="ttts", params={"max_resample": 1e300}),
            "invalid_argument",
            "params.max_resample",
        ),
        (dict(algorithm="best_base"), "invalid_argument", "popularity"),
        (dict(priors=[(1.0, 1.0)]), "invalid_argument", "priors"),
    ],
)
def test_bad_requests_name_their_field(kwargs, kind, field):
    args = dict(algorithm="gem", n_models=50, n_items=100, budget=5000, seed=0) | kwargs
    with pytest.raises(_core.SearchError) as info:
        _core.Scheduler(**args)
    assert isinstance(info.value, ValueError)
    assert (info.value.kind, info.value.field) == (kind, field)


def test_telling_an_unknown_pull_is_an_error_and_changes_nothing():
    s = _core.Scheduler("uniform", 4, 10, 40, 0)
    model, item = s.ask(1)[0]
    s.tell(model, item, True)
    with pytest.raises(_core.SearchError, match="not in flight"):
        s.tell(model, item, True)
    assert s.spent == 1


@pytest.mark.parametrize("algorithm", ["ttts", "gem"])
def test_tell_many_is_tell_one_by_one(algorithm):
    """The batch the service tells from a worker thread leaves the same state as single tells,
    reports the pulls it skipped, and stops at a pull not in flight."""
    correct = pool(12, 20, seed=4)
    one, many = (
        _core.Scheduler(algorithm, 12, 20, 120, 3, params={"max_attempts": 1}) for _ in "ab"
    )
    count = 0
    while not one.finished:
        pulls = one.ask(8)
        assert many.ask(8) == pulls
        answers = []
        for model, item in pulls:
            count += 1
            answer = None if count % 5 == 0 else bool(correct[model, item])
            answers.append((model, item, answer))
            if answer is None:
                one.tell_failed(model, item)
            else:
                one.tell(model, item, answer)
        skipped = many.tell_many(answers)
        assert skipped == [(m, i) for m, i, a in answers if a is None]  # one try each
        assert many.snapshot() == one.snapshot()
    assert many.recommendation == one.recommendation and many.skipped > 0
    fresh = _core.Scheduler("uniform", 4, 10, 40, 0)
    (model, item), *_ = fresh.ask(2)
    with pytest.raises(_core.SearchError, match="not in flight"):
        fresh.tell_many([(model, item, True), (model, item, True)])
    assert fresh.spent == 1


def test_corrupt_snapshot_is_rejected():
    with pytest.raises(_core.SearchError) as info:
        _core.Scheduler.restore(b"garbage")
    assert info.value.kind == "corrupt_snapshot"


def test_best_base_and_random_spend_nothing():
    s = _core.Scheduler("best_base", 5, 10, 0, 0, popularity=[3.0, 9.0, 1.0, 0.0, 2.0])
    assert s.finished and s.spent == 0 and s.recommendation == 1
    picks = {_core.Scheduler("random", 5, 10, 0, seed).recommendation for seed in range(40)}
    assert picks == set(range(5))


def test_simulator_spends_exactly_and_picks_the_clear_best():
    correct = pool(64, 400, 2)
    correct[17] = 1  # a perfect model: every algorithm with budget must find it
    picks, spent = _core.simulate_trials(correct, "gem", 64 * 20, 0, 0, 50)
    assert (picks == 17).all()
    assert (spent <= 64 * 20).all() and (spent >= 64 * 20 - 2).all()
    summary = _core.summarize(correct.mean(axis=1), picks, spent)
    assert summary["p_best"] == 1.0 and summary["mean_rank"] == 1.0


def test_wilson_interval_matches_the_ranking_and_rejects_impossible_counts():
    sched = _core.Scheduler("uniform", 2, 10, 20, 0)
    for model, item in sched.ask():
        sched.tell(model, item, model == 0 or item < 3)
    for row in sched.ranking():
        assert _core.wilson_interval(row.successes, row.seen) == (row.lower, row.upper)
    assert _core.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = _core.wilson_interval(7, 10)
    assert lo == pytest.approx(0.3968, abs=1e-4) and hi == pytest.approx(0.8922, abs=1e-4)
    with pytest.raises(ValueError, match="cannot exceed"):
        _core.wilson_interval(11, 10)


def test_both_schedulers_have_the_whole_shared_surface_of_the_stub():
    """_core.pyi declares the surface Scheduler and CertifiedScheduler share once, as a
    Protocol both derive from. stubtest checks each runtime method against it, but not that a
    member declared there exists at runtime on each class: this does."""
    stub = ast.parse(Path(_core.__file__).with_name("_core.pyi").read_text())
    classes = {n.name: n for n in stub.body if isinstance(n, ast.ClassDef)}
    members = {n.name for n in classes["_AskTell"].body if isinstance(n, ast.FunctionDef)}
    assert {"ask", "tell_many", "snapshot", "ranking", "recommendation"} <= members
    for cls in (_core.Scheduler, _core.CertifiedScheduler):
        assert [b.id for b in classes[cls.__name__].bases] == ["_AskTell"]
        assert [m for m in sorted(members) if not hasattr(cls, m)] == [], cls.__name__
