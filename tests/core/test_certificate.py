"""Fixed-confidence searches: the certificate's error rate stays within delta over many trials.

The certificate (core_rs/src/certificate.rs, successive elimination on it in certified.rs)
claims P(loss > epsilon reached) <= delta, and a search that stops certified claims
P(loss > epsilon) <= delta. Both are checked here on small
pools with near-tied leaders (so wrong picks happen) by the upper 95% Clopper-Pearson bound over
thousands of trials, and the checks are not vacuous: searches do certify and stop early.
"""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder import _core
from gemfinder.loss import clopper_pearson_upper
from scipy.stats import beta

TRIALS = 3000
DELTA = 0.1


def pool(accuracies: list[float], n: int, seed: int, agree: float = 0.7) -> np.ndarray:
    """Models that share item difficulty (`agree` of the items read a common draw), so paired
    answers are correlated as on real benchmarks."""
    rng = np.random.default_rng(seed)
    common = rng.random(n)
    rows = [np.where(rng.random(n) < agree, common, rng.random(n)) < a for a in accuracies]
    return np.ascontiguousarray(np.array(rows, dtype=np.uint8))


# name -> (matrix, epsilon, budget as a share of a full evaluation). The tied pools get a tenth
# of a full evaluation, so that about half the picks are wrong.
POOLS = {
    "clear leader": (pool([0.8, 0.5, 0.45, 0.4, 0.3, 0.3, 0.2, 0.1], 200, 1), 0.05, 0.75),
    "near tie": (pool([0.62, 0.61, 0.6, 0.45, 0.4, 0.3], 300, 2), 0.1, 0.1),
    "tie of three": (pool([0.55, 0.55, 0.54, 0.35], 400, 3), 0.05, 0.1),
}


def budget_of(name: str) -> int:
    correct, _, share = POOLS[name]
    return int(correct.size * share)


@pytest.mark.parametrize("name", list(POOLS))
def test_error_rate_upper_bound_is_within_delta(name: str) -> None:
    correct, epsilon, _ = POOLS[name]
    budget = budget_of(name)
    picks, spent, reached = _core.simulate_certified(correct, budget, 7, 0, TRIALS, epsilon, DELTA)
    acc = correct.mean(axis=1)
    loss = acc.max() - acc[picks.astype(np.int64)]
    tol = 1e-12  # accuracies are ratios of counts
    beyond_certificate = int(np.sum(loss > reached + tol))
    assert clopper_pearson_upper(beyond_certificate, TRIALS) <= DELTA, name
    certified = reached <= epsilon
    wrong_when_certified = int(np.sum(certified & (loss > epsilon + tol)))
    assert clopper_pearson_upper(wrong_when_certified, TRIALS) <= DELTA, name
    # Early stopping: never more than the budget, and certified searches stop before it.
    assert (spent <= budget).all()
    if certified.mean() > 0.5:
        assert spent[certified].mean() < 0.9 * budget, name


def test_searches_certify_and_stop_early_where_the_gap_is_clear() -> None:
    correct, epsilon, _ = POOLS["clear leader"]
    budget = budget_of("clear leader")
    _, spent, reached = _core.simulate_certified(correct, budget, 7, 0, 500, epsilon, DELTA)
    assert (reached <= epsilon).mean() > 0.95
    assert spent.mean() < 0.9 * budget


def test_wrong_picks_do_happen_on_the_near_tie() -> None:
    """The error-rate test above has something to catch: the searches pick a worse model often,
    so a certificate that ignored the sampling error would be caught."""
    correct, epsilon, _ = POOLS["near tie"]
    picks, _, reached = _core.simulate_certified(
        correct, budget_of("near tie"), 7, 0, 1000, epsilon, DELTA
    )
    acc = correct.mean(axis=1)
    loss = acc.max() - acc[picks.astype(np.int64)]
    assert (loss > 0).mean() > 0.3
    # Without the whole pool answered nothing tells near-tied leaders apart: never certified 0.
    assert (reached > 0).all()


def test_certified_elimination_drops_only_models_certified_worse() -> None:
    """Two identical best models and clearly worse ones, with the whole pool as the budget: the
    worse ones are dropped along the way (far less than a full evaluation is spent) and the pick
    is one of the two best, with a certificate of 0 once the two read the whole pool."""
    rng = np.random.default_rng(5)
    best = rng.random(400) < 0.8
    worse = [rng.random(400) < a for a in (0.3, 0.35, 0.4, 0.3, 0.2)]
    correct = np.ascontiguousarray(np.array([worse[0], best, *worse[1:], best], dtype=np.uint8))
    picks, spent, reached = _core.simulate_certified(correct, correct.size, 3, 0, 200, 0.0, 0.05)
    assert set(picks.tolist()) <= {1, 6}
    assert (reached == 0).all()
    # Both best read all 400 items; the five others were dropped long before.
    assert (spent >= 800).all() and spent.mean() < 0.5 * correct.size


def test_bad_targets_and_budgets_are_refused_naming_the_field() -> None:
    correct, _, _ = POOLS["clear leader"]
    with pytest.raises(_core.SearchError) as err:
        _core.simulate_certified(correct, 800, 1, 0, 10, 0.05, 1.5)
    assert err.value.field == "delta"
    with pytest.raises(_core.SearchError) as err:
        _core.simulate_certified(correct, 800, 1, 0, 10, -0.1, 0.1)
    assert err.value.field == "epsilon"
    with pytest.raises(_core.SearchError) as err:
        _core.simulate_certified(correct, 7, 1, 0, 10, 0.05, 0.1)
    assert err.value.field == "budget"


@pytest.mark.parametrize(("hits", "n"), [(0, 2000), (3, 2000), (50, 2000), (10, 100), (99, 100)])
def test_clopper_pearson_upper_matches_the_beta_quantile(hits: int, n: int) -> None:
    assert clopper_pearson_upper(hits, n) == pytest.approx(beta.ppf(0.95, hits + 1, n - hits))
    assert clopper_pearson_upper(n, n) == 1.0
