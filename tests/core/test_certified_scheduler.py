"""The fixed-confidence search driven by ask/tell (`_core.CertifiedScheduler`, the surface the
runner drives): it stops early with its certificate where the best is clear, spends the maximum
and reports the best certificate reached where it is not, survives a snapshot round trip, and
refuses what it did not hand out."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder import _core


def pool(accuracies: list[float], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.random(n)
    rows = [np.where(rng.random(n) < 0.7, common, rng.random(n)) < a for a in accuracies]
    return np.array(rows, dtype=np.uint8)


def drive(sched, correct: np.ndarray, batch: int = 37, snapshot_every: int = 0):
    """Ask in batches, answer from the matrix, round-trip the snapshot now and then."""
    steps = 0
    while not sched.finished:
        pulls = sched.ask(batch)
        assert pulls, "a search that is not finished hands out work"
        sched.tell_many([(m, i, bool(correct[m, i])) for m, i in pulls])
        steps += 1
        if snapshot_every and steps % snapshot_every == 0:
            sched = _core.CertifiedScheduler.restore(sched.snapshot())
    return sched


def test_a_clear_best_is_certified_and_the_search_stops_early():
    correct = pool([0.85, 0.5, 0.45, 0.4, 0.3, 0.3, 0.2], 1000, 1)
    budget = correct.size
    sched = drive(_core.CertifiedScheduler(7, 1000, budget, 3, 0.02, 0.05), correct)
    assert sched.recommendation == 0
    assert sched.epsilon_reached <= 0.02
    assert sched.spent < 0.5 * budget
    ranking = sched.ranking()
    assert ranking[0].model == 0 and ranking[0].rank == 1
    # Every other model was dropped, certified worse, in some stretch.
    assert all(r.eliminated_in_round is not None for r in ranking[1:])
    assert sched.algorithm == "certified" and (sched.epsilon, sched.delta) == (0.02, 0.05)


def test_a_near_tie_spends_the_maximum_and_reports_the_certificate_reached():
    correct = pool([0.6, 0.6, 0.59, 0.4], 2000, 2)
    budget = 2000
    sched = drive(_core.CertifiedScheduler(4, 2000, budget, 3, 0.005, 0.05), correct)
    # All of it, but for less than one item per survivor (each reads the same positions).
    assert sched.finished and budget - len(sched.survivors()) < sched.spent <= budget
    assert 0.005 < sched.epsilon_reached < 1
    assert sched.recommendation in (0, 1, 2)


def test_the_snapshot_resumes_to_the_same_decisions():
    correct = pool([0.7, 0.65, 0.5, 0.45, 0.3], 800, 3)
    args = (5, 800, 4000, 9, 0.03, 0.1)
    plain = drive(_core.CertifiedScheduler(*args), correct)
    resumed = drive(_core.CertifiedScheduler(*args), correct, snapshot_every=3)
    assert (plain.recommendation, plain.spent, plain.epsilon_reached) == (
        resumed.recommendation,
        resumed.spent,
        resumed.epsilon_reached,
    )
    with pytest.raises(_core.SearchError, match="snapshot"):
        _core.CertifiedScheduler.restore(b"GEMFND01" + plain.snapshot()[8:])


def test_pulls_not_handed_out_and_bad_targets_are_refused():
    sched = _core.CertifiedScheduler(3, 50, 150, 1, 0.05, 0.05)
    model, item = sched.ask(1)[0]
    with pytest.raises(_core.SearchError):
        sched.tell(model, (item + 1) % 50, True)
    sched.tell(model, item, True)
    with pytest.raises(_core.SearchError):
        sched.tell(model, item, True)  # told twice
    for epsilon, delta, field in [(1.5, 0.05, "epsilon"), (0.05, 0.0, "delta")]:
        with pytest.raises(_core.SearchError) as err:
            _core.CertifiedScheduler(3, 50, 150, 1, epsilon, delta)
        assert err.value.field == field
    with pytest.raises(_core.SearchError) as err:
        _core.CertifiedScheduler(3, 50, 2, 1, 0.05, 0.05)
    assert err.value.field == "budget"
