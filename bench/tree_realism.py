"""Print agreement statistics of real small pools next to accuracy-matched synthetic subsets.

    python bench/tree_realism.py [--seed 0] [--repeats 20] [--data ../shared/data]

routerdc-mistral7 (5 real Mistral-7B fine-tunes) is compared with the mistral-7b preset;
opencompass-12 (12 unrelated models, no tree) with every five-task preset pooled by accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gemfinder.sim.trees import generate
from gemfinder.sim.trees.realism import compare, load_opencompass, load_routerdc
from shared_data import SHARED_DATA, require


def show(title: str, rows: dict[str, tuple[float, float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'statistic':<22} {'real':>8} {'synthetic':>10} {'(sd)':>7}")
    for key, (real, syn, sd) in rows.items():
        print(f"  {key:<22} {real:>8.3f} {syn:>10.3f} {sd:>7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    args = ap.parse_args()
    matrices = args.data / "matrices"
    require(matrices / "routerdc-mistral7", matrices / "opencompass-12", option="--data DIR")

    real, names, tasks = load_routerdc(matrices / "routerdc-mistral7")
    tree = generate("mistral-7b", args.seed)
    rows = compare(real, tasks, tree.matrix.correct, tree.item_tasks, args.repeats, args.seed)
    show(f"routerdc-mistral7: {len(names)} Mistral-7B models vs mistral-7b preset", rows)

    oc = load_opencompass(matrices / "opencompass-12" / "combine.csv")
    # Unrelated models span 0.23..0.86; no single tree covers that, so pool four trees.
    pools = [
        generate(p, args.seed) for p in ("qwen2.5-3b", "qwen2.5-7b", "mistral-7b", "llama3.1-8b")
    ]
    pooled = np.concatenate([t.matrix.correct for t in pools])
    rows = compare(oc, None, pooled, pools[0].item_tasks, args.repeats, args.seed)
    show("opencompass-12: 12 unrelated models vs 4 presets pooled", rows)


if __name__ == "__main__":
    main()
