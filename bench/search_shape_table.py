"""Published vs reproduced search behaviour of the four presets, over held-out generator seeds.

    python bench/search_shape_table.py [--seeds 0 1 2 3 4] [--trials 300] [--set KNOB=VALUE ...]
        [--presets ...] [--markdown OUT]

Each published pool is one matrix; ours vary with the generator seed, so every figure is the
mean over `--seeds` pools (presets are fitted on seeds 100+, so 0-9 are held out) of the mean
rank over `--trials` paired trials (gemfinder.sim.simulation.simulate, seed 0). Rows: the published
ones that run fast (TTTS and UCB-E are left out: seconds per trial), plus correlated SH and the
reference method `gem` at first-round shares f in 0.1-0.6 (m = 100; the core's defaults are not
changed). `--set` overrides preset knobs for every preset (e.g. `--set rho_family=0`), to
measure what a knob does. Also prints top20_d: mean share of items on which two of the 20 best
models disagree (paired search resolves differences of about sqrt(d / items)).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate, get_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from published_table import PRESETS, published  # noqa: E402

SHARES = (0.1, 0.2, 0.35, 0.5, 0.6)
ROWS = [("random", None), ("best_base", None)]
ROWS += [(a, 10) for a in ("sh", "uniform", "sr", "bayes_elim", "sh_correlated")]
ROWS += [(f"gem f={f:g}", 10) for f in SHARES]
ROWS += [(a, 50) for a in ("sh", "sh_correlated")] + [(f"gem f={f:g}", 50) for f in SHARES]


def top_disagreement(correct: np.ndarray, acc: np.ndarray, top: int = 20) -> float:
    x = correct[np.argsort(-acc)[:top]].astype(np.float64)
    d = (x @ (1 - x).T + (1 - x) @ x.T) / x.shape[1]
    return float(d[np.triu_indices(len(x), 1)].mean())


def run(preset: str, seeds, trials: int, overrides: dict) -> dict:
    cfg = dataclasses.replace(get_preset(preset), **overrides)
    cells: dict[str, list[float]] = {}
    for s in seeds:
        matrix = generate(cfg, s).matrix
        acc = matrix.accuracies()
        cells.setdefault("top20_d", []).append(top_disagreement(matrix.correct, acc))
        cells.setdefault("best_acc", []).append(float(acc.max()))
        for name, n in ROWS:
            params = None
            alg = name
            if name.startswith("gem f="):
                alg, params = "gem", {"first_round_share": float(name[6:]), "first_cut": 100}
            r = simulate(matrix, alg, n or 10, 1 if name == "best_base" else trials, 0, params)
            cells.setdefault(f"{name}|{n}", []).append(r["mean_rank"])
    return {k: float(np.mean(v)) for k, v in cells.items()}


def value(raw: str):
    try:
        return float(raw)
    except ValueError:
        return None if raw == "None" else raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--set", nargs="*", default=[], metavar="KNOB=VALUE")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    overrides = {k: value(v) for k, v in (s.split("=", 1) for s in args.set)}
    res = {p: run(p, args.seeds, args.trials, overrides) for p in args.presets}
    head = "| algorithm | N | " + " | ".join(args.presets) + " |"
    lines = [head, "|---|---|" + "---|" * len(args.presets)]
    for name, n in ROWS:
        pub_name = "reference" if name.startswith("gem") else name
        cells = []
        for p in args.presets:
            pub = published(p, pub_name, n)
            cells.append(f"{res[p][f'{name}|{n}']:.1f}" + ("" if pub is None else f" ({pub[0]:g})"))
        lines.append(f"| {name} | {n or 'any'} | " + " | ".join(cells) + " |")
    for key in ("best_acc", "top20_d"):
        row = " | ".join(f"{res[p][key]:.3f}" for p in args.presets)
        lines.append(f"| {key} | | {row} |")
    text = "\n".join(lines)
    print(f"seeds {args.seeds}, {args.trials} trials, overrides {overrides or 'none'}")
    print("mean rank, mean over seeds; published in brackets")
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
