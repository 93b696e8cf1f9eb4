"""Why the synthetic presets do not reproduce the published SH and gem ranks: five checks.

    python bench/reproduction_gap.py [--trials 1000] [--seed 0] [--presets ...]

1. top:      the published (mean rank, mean accuracy loss) pairs against the synthetic pool:
             how many synthetic models lie within that loss of the best (a dense or sparse top).
2. round1:   SH's first round at N=10 (about one item per model): how often the best model and
             the top 10 survive it, with random tie-breaks as the core does.
3. reshape:  move part of the pool below the best base into a cluster just under it, and push
             the rest down so the random-model mean stays the same (best base rank, best model
             and top unchanged): more junk + a crowded middle, as the published marginals allow.
4. sh variants: a NumPy SH with the core's item windows and budget rule, to see what the
             published SH may have done differently: means over the current round only
             (Karnin et al.'s original) instead of accumulated, ties kept by index instead of
             at random, and a shared (correlated) item order.
5. ceiling:  the generator's `ceiling_scale` (how hard strong fine-tunes pile up under the best),
             presets untouched: their configs are copied with `dataclasses.replace`.
Ranks of sh, sh_correlated and gem come from the Rust simulator (gemfinder.sim.simulation).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate, get_preset
from gemfinder.sim.trees.stats import marginals

sys.path.insert(0, str(Path(__file__).resolve().parent))
from published_table import _COLUMNS, PRESETS, REFERENCE_PARAMS  # noqa: E402

# gem here is the reference method (published m = 100), as in the published table
ALGS = (("sh", None), ("sh_correlated", None), ("gem", REFERENCE_PARAMS))


def ranks(matrix: CorrectnessMatrix, n_avg: int, trials: int, seed: int) -> list[float]:
    return [simulate(matrix, a, n_avg, trials, seed, p)["mean_rank"] for a, p in ALGS]


def top_check(preset: str, acc: np.ndarray) -> None:
    j = PRESETS.index(preset)
    best_pub = _COLUMNS[("best", None)][j][1]
    print(f"{preset}: published rank / loss (pt) -> synthetic models within that loss")
    for (alg, n), col in _COLUMNS.items():
        rank, a = col[j]
        if a is None or alg in ("best", "random"):
            continue
        loss = best_pub - a
        within = int((acc >= acc.max() - loss - 1e-9).sum())
        line = f"rank {rank:6.1f}  loss {100 * loss:4.1f}  synthetic {within:4d}"
        print(f"  {alg:>9} N={n!s:>4}: {line}")


def round1_check(matrix: CorrectnessMatrix, n_avg: int, trials: int, seed: int) -> None:
    """P(best survives SH round 1) and mean number of the top 10 surviving, independent items."""
    acc = matrix.accuracies()
    k, n = matrix.correct.shape
    rounds = int(np.ceil(np.log2(k)))
    t = max(1, (n_avg * k // rounds) // k)
    top10 = np.argsort(-acc)[:10]
    rng = np.random.default_rng(seed)
    best_ok, top_kept = 0, 0
    for _ in range(trials):
        items = rng.random((k, n)).argpartition(t, axis=1)[:, :t]  # t random items per model
        score = np.take_along_axis(matrix.correct, items, axis=1).sum(axis=1, dtype=np.int64)
        keep = np.lexsort((rng.random(k), -score))[: (k + 1) // 2]
        mask = np.zeros(k, dtype=bool)
        mask[keep] = True
        best_ok += mask[int(np.argmax(acc))]
        top_kept += mask[top10].sum()
    print(
        f"  round 1 at N={n_avg}: {t} item(s) per model over {rounds} rounds; "
        f"P(best survives) {best_ok / trials:.2f}, top-10 survivors {top_kept / trials:.1f}"
    )


def numpy_sh(correct: np.ndarray, budget: int, rng: np.random.Generator, variant: str) -> int:
    """One SH trial. variant: letters a (accumulate means), i (ties by index), c (correlated)."""
    k, n = correct.shape
    rounds = int(np.ceil(np.log2(k)))
    perm = rng.permutation(n)
    offset = np.zeros(k, dtype=np.int64) if "c" in variant else rng.integers(0, n, k)
    seen = np.zeros(k, dtype=np.int64)
    hits = np.zeros(k, dtype=np.int64)
    alive, remaining = np.arange(k), budget
    for r in range(rounds):
        t = max(1, min(n - int(seen[alive].max()), remaining // (rounds - r) // alive.size))
        pos = (offset[alive, None] + seen[alive, None] + np.arange(t)) % n
        got = correct[alive[:, None], perm[pos]].sum(axis=1, dtype=np.int64)
        remaining -= t * alive.size
        seen[alive] += t
        hits[alive] = hits[alive] + got if "a" in variant else got
        score = hits[alive] / (seen[alive] if "a" in variant else t)
        tie = np.arange(alive.size) if "i" in variant else rng.random(alive.size)
        alive = alive[np.lexsort((tie, -score))[: (alive.size + 1) // 2]]
        if alive.size == 1:
            break
    return int(alive[0])


VARIANTS = {
    "a": "accumulated, random ties (~ core sh)",
    "": "this round only, random ties",
    "ai": "accumulated, ties by index",
    "i": "this round only, ties by index",
    "ac": "accumulated, correlated (~ sh_correlated)",
}


def sh_variants(matrix: CorrectnessMatrix, n_avg: int, trials: int, seed: int) -> None:
    acc = matrix.accuracies()
    rank = np.empty(acc.size)
    for k in range(acc.size):  # average rank with ties, as the simulator reports
        rank[k] = 1 + (acc > acc[k]).sum() + ((acc == acc[k]).sum() - 1) / 2
    for variant, label in VARIANTS.items():
        rng = np.random.default_rng([seed, n_avg])
        picks = [numpy_sh(matrix.correct, n_avg * acc.size, rng, variant) for _ in range(trials)]
        print(f"  N={n_avg:<3} SH {label:<42} mean rank {rank[picks].mean():6.1f}")


def reshape(matrix: CorrectnessMatrix, cluster: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of the matrix where a share `cluster` of the models below the best base sit in
    [base - 3 pt, base) and the other low models are scaled down to keep the pool mean."""
    correct = matrix.correct.copy()
    acc = matrix.accuracies()
    base_acc = acc[int(np.argmax(matrix.downloads))]
    low = np.flatnonzero(acc < base_acc)
    movers = rng.choice(low, size=int(cluster * low.size), replace=False)
    rest = np.setdiff1d(low, movers)
    target = acc.copy()
    target[movers] = base_acc - rng.uniform(0.0, 0.03, movers.size)
    deficit = target[movers].sum() - acc[movers].sum()
    # same pool mean where possible (the printed mean shows when the clip bites)
    target[rest] = np.clip(acc[rest] * (1 - deficit / acc[rest].sum()), 0.0, 1.0)
    n = correct.shape[1]
    for k in np.concatenate([movers, rest]):
        want = int(round(target[k] * n))
        have = int(correct[k].sum())
        pool = np.flatnonzero(correct[k] == (1 if want < have else 0))  # bits to flip
        flip = rng.choice(pool, size=abs(want - have), replace=False)
        correct[k, flip] ^= 1
    return correct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    args = ap.parse_args()
    head = "  ".join(f"{a:>13}" for a, _ in ALGS)
    for preset in args.presets:
        matrix = generate(preset, args.seed).matrix
        print(f"\n== {preset}")
        top_check(preset, matrix.accuracies())
        round1_check(matrix, 10, 200, args.seed)
        print(f"  reshape (mean rank at N=10 | N=50){'':8}{head}")
        rng = np.random.default_rng(args.seed)
        for cluster in (0.0, 0.25, 0.5, 0.75):
            shaped = replace(matrix, correct=reshape(matrix, cluster, rng))
            m = marginals(shaped)
            r10 = ranks(shaped, 10, args.trials, args.seed)
            r50 = ranks(shaped, 50, args.trials, args.seed)
            cells = "  ".join(f"{a:6.1f} |{b:5.1f}" for a, b in zip(r10, r50, strict=True))
            print(
                f"  cluster {cluster:.2f}: mean {m['random_mean']:.3f} "
                f"base rank {m['base_rank']:5.1f}       {cells}"
            )
        for n_avg in (10, 50):
            sh_variants(matrix, n_avg, min(args.trials, 300), args.seed)
        cfg = get_preset(preset)
        print(f"  ceiling_scale (preset {cfg.ceiling_scale})")
        for factor in (0.5, 1.0, 2.0, 4.0):
            tree = generate(replace(cfg, ceiling_scale=cfg.ceiling_scale * factor), args.seed)
            acc = tree.matrix.accuracies()
            m = marginals(tree.matrix)
            dense = int((acc >= acc.max() - 0.005).sum())
            r10 = ranks(tree.matrix, 10, args.trials, args.seed)
            r50 = ranks(tree.matrix, 50, args.trials, args.seed)
            cells = "  ".join(f"{a:6.1f} |{b:5.1f}" for a, b in zip(r10, r50, strict=True))
            base = f"base {m['base_acc']:.3f}/{m['base_rank']:5.1f}"
            print(f"  x{factor:<4g} best {acc.max():.3f} {base} within 0.5pt {dense:3d}  {cells}")


if __name__ == "__main__":
    main()
