"""How much could a better first cut gain? Hand correlated SH the true top-k models for free.

    python bench/oracle_bound.py [--presets qwen2.5-3b mistral-7b] [--trials 300]

For each synthetic preset and budget, prints the mean rank correlated SH reaches on the whole
pool, and on the true top-k models only (an oracle first cut that costs nothing) with the full
budget and with half of it. If the oracle rows are not much better than the whole-pool row, the
search is limited by telling the top models apart, not by the first cut.
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.trees import PRESETS, generate


def oracle_rows(preset: str, seed: int, trials: int, budgets: list[int]) -> list[str]:
    matrix = generate(preset, seed).matrix
    acc = matrix.accuracies()
    order = np.argsort(-acc)
    k = len(acc)
    lines = []
    for n_avg in budgets:
        cells = []
        for top in (k, 100, 20):
            sub = np.ascontiguousarray(matrix.correct[order[:top]])
            for share in (1.0, 0.5):
                budget = int(k * n_avg * share)
                if budget < _core.min_budget("sh_correlated", top, sub.shape[1]):
                    continue
                picks, spent = _core.simulate_trials(sub, "sh_correlated", budget, 0, 0, trials)
                rank = _core.summarize(acc[order[:top]], picks, spent)["mean_rank"]
                label = "all" if top == k else f"top{top}"
                cells.append(f"{label}@{share:g}B {rank:6.1f}")
        lines.append(f"{preset:<12} N={n_avg:<4} " + "  ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("mean rank of correlated SH; topK = only the true top K models, given for free")
    for preset in args.presets:
        for line in oracle_rows(preset, args.seed, args.trials, args.budgets):
            print(line)


if __name__ == "__main__":
    main()
