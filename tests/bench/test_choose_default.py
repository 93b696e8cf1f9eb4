"""bench/studies/choose_default.py: its statistics (Holm, the paired test), its cells (paired
trials, the oracle inside the true top k) and its decision rule."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate

from bench.studies import choose_default


def test_holm_matches_the_step_down_by_hand():
    # Sorted 0.01, 0.02, 0.04, 0.3 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08 (running max), 0.3.
    adjusted = choose_default.holm([0.04, 0.01, 0.3, 0.02])
    assert adjusted == pytest.approx([0.08, 0.04, 0.3, 0.06])
    assert choose_default.holm([0.5, 0.5]) == [1.0, 1.0]


def test_paired_test_is_one_sided_and_handles_identical_algorithms():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 400)
    assert choose_default.p_worse(noise + 0.5) < 1e-6  # clearly worse
    assert choose_default.p_worse(noise - 0.5) > 0.999  # clearly better: not "worse"
    assert choose_default.p_worse(np.zeros(50)) == 1.0  # same picks in every trial
    assert choose_default.p_worse(np.full(50, 0.2)) == 0.0  # worse in every trial by the same


def test_cell_runs_the_simulator_on_paired_trials_and_an_oracle_inside_the_top_k():
    pool = generate("mistral-7b", 0, models=120, items=600).matrix
    acc = pool.accuracies()
    picks = choose_default.cell(pool, seed=2, n_avg=10, trials=150)
    assert set(picks) == {*choose_default.CANDIDATES, choose_default.ORACLE}
    # The same trials as gemfinder simulate with that seed: the same mean rank.
    gem = choose_default.figures(acc, picks["gem"])
    assert gem["mean_rank"] == simulate(pool, "gem", 10, 150, 2)["mean_rank"]
    # 120 models are below gem's first cut (200): gem is plain correlated SH, pick for pick.
    assert np.array_equal(picks["gem"], picks["sh_correlated"])
    top = np.argsort(-acc, kind="stable")[: min(20, 120 // 4)]
    assert set(picks[choose_default.ORACLE].tolist()) <= set(top.tolist())
    assert gem["p_best"] <= gem["p_half"] and gem["loss_p90"] >= 0


def _row(**losses):
    return {m: {"losses": v, "loss_mean": float(v.mean())} for m, v in losses.items()}


def test_worse_is_tested_against_every_competitor_with_holm_over_the_pairs():
    rng = np.random.default_rng(1)
    base = rng.normal(1.0, 0.3, 300)
    # Cell a: "d" is clearly worse than "b", while "c" has the lowest mean but is too noisy to
    # separate from "d". Against the best after the fact only, the cell passes; against every
    # competitor it does not.
    a = _row(
        d=base + 0.1 + rng.normal(0, 0.2, 300),
        b=base,
        c=base - 0.2 + np.resize([6.0, -6.0], 300),  # mean exactly base - 0.2
    )
    noise = rng.normal(0, 0.1, 300)
    quiet = _row(d=base + noise, b=base, c=base + 0.2)  # d a little worse than b, by chance
    results = {("a", 5.0): a, ("q", 5.0): quiet}
    keys = list(results)
    assert a["c"]["loss_mean"] < a["b"]["loss_mean"]
    assert choose_default.best_only_worse(results, keys, "d") == []
    worse = choose_default.pairwise_worse(results, keys, "d")
    assert list(worse) == [("a", 5.0)]
    (competitor, gap, adjusted), *_ = worse[("a", 5.0)]
    assert competitor == "b" and gap == pytest.approx(0.1, abs=0.03)
    # The family is (cell, competitor) pairs: the smallest p is multiplied by all four.
    raw = choose_default.p_worse(a["d"]["losses"] - a["b"]["losses"])
    assert 0 < raw < 1e-6 and adjusted == pytest.approx(4 * raw)
    assert choose_default.pairwise_worse(results, keys, "b") == {}


def test_the_pairwise_test_holds_its_level_where_testing_the_best_after_the_fact_does_not():
    # Under the null (four candidates with the same mean loss), a cell should be called
    # "significantly worse" in at most 5% of repetitions. Testing only against the competitor
    # that looks best picks the largest of three differences and loses that level (about 12%
    # measured); the pairwise family with Holm keeps it (Monte Carlo error about 0.5%).
    rng = np.random.default_rng(0)
    runs, old, new = 2000, 0, 0
    for _ in range(runs):
        results = {("null", 5.0): _row(**{c: rng.normal(0, 1, 100) for c in "mabc"})}
        keys = list(results)
        old += bool(choose_default.best_only_worse(results, keys, "m"))
        new += bool(choose_default.pairwise_worse(results, keys, "m"))
    assert old / runs > 0.09
    assert new / runs < 0.065


def test_a_cut_share_becomes_a_first_cut_of_the_pool():
    assert choose_default.resolve({"first_round_share": 0.2, "cut_share": 0.25}, 1000) == {
        "first_round_share": 0.2,
        "first_cut": 250.0,
    }
    assert choose_default.resolve({"first_cut": 100.0}, 1000) == {"first_cut": 100.0}
    assert choose_default.resolve(None, 1000) is None


def test_the_choice_prefers_no_worse_cell_then_the_lowest_excess():
    def v(worse, excess):
        return {"worse": [("p", 5.0)] * worse, "excess": excess}

    verdict = {
        ("select", "gem"): v(1, 0.0),
        ("select", "gem m=100"): v(0, 0.3),
        ("select", "sh_correlated"): v(0, 0.1),
        ("select", "sr"): v(2, 0.0),
    }
    assert choose_default.choose(verdict) == "sh_correlated"


def _shifted(shift, rng, trials=300):
    """One cell where candidate "m" loses `shift` points more than "c" on average (paired:
    the same base losses, independent noise of sd 0.5) and "b" is far behind both."""
    base = rng.gamma(2.0, 0.5, trials)
    noise = rng.normal(0, 0.5, trials)
    return _row(m=base + shift + noise - noise.mean(), c=base, b=base + 2.0)


def test_a_margin_above_a_known_shift_is_not_flagged_and_one_below_is():
    rng = np.random.default_rng(3)
    results = {("p", 25.0): _shifted(0.3, rng), ("q", 25.0): _shifted(0.0, rng)}
    keys = list(results)
    assert list(choose_default.pairwise_worse(results, keys, "m")) == [("p", 25.0)]
    assert choose_default.pairwise_worse(results, keys, "m", delta=0.4) == {}
    assert list(choose_default.pairwise_worse(results, keys, "m", delta=0.2)) == [("p", 25.0)]
    # The tolerated margin is where the flag stops: just below the shift by the test's
    # half-width (z of 1 - 0.05/4 pairs times the standard error, 0.5/sqrt(300)).
    delta, at = choose_default.tolerated_margin(results, keys, "m")
    assert at == (("p", 25.0), "c")
    assert delta == pytest.approx(0.3 - 2.24 * 0.5 / np.sqrt(300), abs=0.005)
    assert choose_default.pairwise_worse(results, keys, "m", delta=delta + 1e-9) == {}
    assert choose_default.pairwise_worse(results, keys, "m", delta=delta - 1e-6) != {}
    # The proven margin lies above the shift: there every pair is shown within it. The other
    # three pairs are shown within it by far, so Holm's step-down leaves this one all of alpha
    # (z of 0.95).
    proven, at = choose_default.proven_margin(results, keys, "m")
    assert at == (("p", 25.0), "c")
    assert proven == pytest.approx(0.3 + 1.645 * 0.5 / np.sqrt(300), abs=0.005)
    assert choose_default.shown_within(results, keys, "m", proven)
    assert not choose_default.shown_within(results, keys, "m", proven - 0.01)
    # The competitor ahead everywhere needs no margin; a pair without noise sets its mean.
    assert choose_default.tolerated_margin(results, keys, "c") == (0.0, None)
    fixed = {("f", 5.0): _row(m=np.full(50, 0.7), c=np.full(50, 0.5))}
    delta, _ = choose_default.tolerated_margin(fixed, list(fixed), "m")
    assert delta == pytest.approx(0.2)
    assert choose_default.proven_margin(fixed, list(fixed), "m")[0] == pytest.approx(0.2, abs=2e-4)
