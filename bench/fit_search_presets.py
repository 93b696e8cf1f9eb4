"""Fit a preset's body shape to the published marginals *and* the published SH ranks (dev tool).

    python bench/fit_search_presets.py qwen2.5-3b [--trials 60] [--sims 150] [--seeds 3]

Independent SH (`sh`) depends only on the accuracy vector, so a candidate is scored on proxy
pools: the tree's target accuracies (grow_tree only, no item model), each row a random 0/1 row
with exactly that accuracy. Loss: random mean (/0.01), best-base rank (log, /0.08: its
tolerance is a factor 1.5), best accuracy (/0.003), published SH mean rank at N=10 (log,
/0.15) and N=50 (log, /0.3; it cannot be met together with N=10, see docs/results.md), and a
sparse very top: the models within the published reference method's N=50 accuracy loss of the
best should number at most twice its published mean rank (log excess, /0.3); without it the
fit piles ties at the top, which raises SH's rank and every other method's too. Knobs:
step_mean, step_sd, p_broken, broken_scale, p_light, ceiling, ceiling_scale. Agreement knobs
do not enter (they do not move `sh` or the marginals). Fitting seeds are 100+; report on
seeds 0-9 (held out). llama3.1-8b was fitted with --mean-sd 0.005 (at 0.01 the fit bought
SH rank with a random mean 0.05 off).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gemfinder import _core
from gemfinder.sim.trees.presets import get_preset
from gemfinder.sim.trees.structure import grow_tree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_search import anneal  # noqa: E402
from published_table import published  # noqa: E402

KNOBS = ("step_mean", "step_sd", "p_broken", "broken_scale", "p_light", "ceiling", "ceiling_scale")


def proxy_matrix(acc: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.rint(acc * n_items).astype(np.int64)
    rows = (np.arange(n_items)[None, :] < counts[:, None]).astype(np.uint8)
    return np.ascontiguousarray(rng.permuted(rows, axis=1))


def sh_rank(correct: np.ndarray, n_avg: int, sims: int) -> float:
    k = correct.shape[0]
    picks, spent = _core.simulate_trials(correct, "sh", n_avg * k, 0, 0, sims)
    return float(_core.summarize(correct.mean(axis=1), picks, spent)["mean_rank"])


def measure(cfg, seeds, sims) -> np.ndarray:
    """Mean over seeds of (random mean, best-base rank, best, SH N=10, SH N=50, top count)."""
    out = []
    n_items = sum(cfg.tasks.values())
    gem50 = published(cfg.name, "reference", 50)
    top_loss = published(cfg.name, "best", None)[1] - gem50[1]
    for s in seeds:
        rng = np.random.default_rng(s)
        tree = grow_tree(cfg, cfg.targets.pool_size, rng)
        acc = np.rint(tree.target_acc * n_items) / n_items
        a = acc[tree.anchor]
        rank = 1 + (acc > a).sum() + 0.5 * ((acc == a).sum() - 1)
        m = proxy_matrix(acc, n_items, rng)
        top = (acc >= acc.max() - top_loss - 1e-9).sum()
        out.append((acc.mean(), rank, acc.max(), sh_rank(m, 10, sims), sh_rank(m, 50, sims), top))
    return np.array(out).mean(axis=0)


def loss(cfg, seeds, sims, mean_sd=0.01) -> tuple[float, np.ndarray]:
    mean, rank, best, sh10, sh50, top = m = measure(cfg, seeds, sims)
    t = cfg.targets
    pub10 = published(cfg.name, "sh", 10)[0]
    pub50 = published(cfg.name, "sh", 50)[0]
    value = (
        ((mean - t.random_mean) / mean_sd) ** 2
        + (np.log(rank / t.base_rank) / 0.08) ** 2
        + ((best - t.best_acc) / 0.003) ** 2
        + (np.log(sh10 / pub10) / 0.15) ** 2
        + (np.log(sh50 / pub50) / 0.3) ** 2
        + (max(0.0, np.log(top / (2 * published(cfg.name, "reference", 50)[0]))) / 0.3) ** 2
    )
    return float(value), m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("preset")
    ap.add_argument("--trials", type=int, default=60, help="candidates")
    ap.add_argument("--sims", type=int, default=150, help="SH trials per pool")
    ap.add_argument("--seeds", type=int, default=3, help="fitting pools (seeds 100+)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mean-sd", type=float, default=0.01, help="weight of the random mean")
    args = ap.parse_args()
    cfg = get_preset(args.preset)
    rng = np.random.default_rng(args.seed)
    seeds = range(100, 100 + args.seeds)
    start_loss, start_m = loss(cfg, seeds, args.sims, args.mean_sd)
    print(f"start loss {start_loss:.2f} {np.round(start_m, 3)}", flush=True)
    best_cfg, best_loss, best_m = anneal(
        cfg,
        lambda c: loss(c, seeds, args.sims, args.mean_sd),
        KNOBS,
        args.trials,
        rng,
        start=0.4,
        floor=0.05,
        additive={"ceiling": 0.01, "step_mean": 0.5},
        clipped={"p_light": (0.2, 0.0, 0.9)},
        on_better=lambda i, cl, cm: print(f"{i:4d} loss {cl:.2f} {np.round(cm, 3)}", flush=True),
        initial=(start_loss, start_m),
    )
    print(f"loss {best_loss:.3f} (mean, base rank, best, sh10, sh50, top) {np.round(best_m, 3)}")
    for k in KNOBS:
        print(f"        {k}={getattr(best_cfg, k):.3f},")


if __name__ == "__main__":
    main()
