"""bench/studies/screen_gem_grid.py: the grid it screens and its lenient pass rule."""

from __future__ import annotations

import numpy as np
from gemfinder.sim.trees import generate

from bench.studies import choose_default, screen_gem_grid


def test_the_grid_holds_every_share_and_cut_and_one_point_is_plain_correlated_sh():
    grid = screen_gem_grid.grid()
    shares, cuts = screen_gem_grid.FIRST_ROUND_SHARES, screen_gem_grid.FIRST_CUTS
    assert len(grid) == len(shares) * len(cuts) + 1
    # At 1,000 models SH's first round spends 1/ceil(log2 1000) = 0.1 and keeps 500: gem with
    # f = 0.1 and m = K/2 is the same plan, so it must return the same picks on paired trials.
    pool = generate("mistral-7b", 1, models=1000, items=400).matrix
    picks = choose_default.cell(
        pool, 1, 5, 40, {"sh": ("sh_correlated", None), "g": grid["gem f=0.1 m=K/2"]}
    )
    assert np.array_equal(picks["sh"], picks["g"])


def _row(**losses):
    return {m: {"losses": v, "loss_mean": float(v.mean())} for m, v in losses.items()}


def test_a_variant_fails_the_screen_only_when_the_full_familys_bonferroni_rejects():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.5, 300)
    noise = rng.normal(0, 0.5, 300)
    row = _row(**{c: base for c in choose_default.CANDIDATES})
    row |= _row(close=base + 0.05 + noise - noise.mean(), far=base + 0.3 + noise - noise.mean())
    results = {("mistral-7b@1000/s5", 25.0): row}
    # 0.05 points with s.e. 0.029 is p about 0.04: significant alone, not after x240.
    passes, p, _ = screen_gem_grid.screen(results, "close", 240)
    assert passes and p > 0.05
    assert not screen_gem_grid.screen(results, "close", 1)[0]
    passes, p, pair = screen_gem_grid.screen(results, "far", 240)
    assert not passes and p < 1e-10 and pair.endswith("on mistral-7b N=25")
