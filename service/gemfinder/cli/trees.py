"""`gemfinder trees`: generate synthetic model trees, list the presets, describe a matrix file."""

from __future__ import annotations

import argparse

from gemfinder.errors import UserError
from gemfinder.outputs import check_writable
from gemfinder.sim.matrix import load_matrix, save_npz
from gemfinder.sim.trees import PRESETS, generate
from gemfinder.sim.trees.generate import tree_arrays
from gemfinder.sim.trees.stats import agreement, marginals, task_accuracies


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trees", help="synthetic model trees (pools of fine-tunes)")
    sub = parser.add_subparsers(dest="trees_command", metavar="ACTION", required=True)

    gen = sub.add_parser("generate", help="write a synthetic pool to an .npz file")
    gen.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    gen.add_argument("--out", required=True, help="output file, must end in .npz")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--models", type=int, help="pool size (default: the preset's)")
    gen.add_argument("--items", type=int, help="number of items (default: the preset's)")
    gen.set_defaults(handler=_generate)

    lst = sub.add_parser("list", help="list presets and the marginals they target")
    lst.set_defaults(handler=_list)

    st = sub.add_parser("stats", help="marginals of a matrix file (.npz, .npy, .csv)")
    st.add_argument("file", help="matrix file")
    st.set_defaults(handler=_stats)


def check_tree_flags(
    preset: str, models: int | None, items: int | None = None, seed: int = 0
) -> None:
    """The flags of a generated tree (`trees generate`, `demo`, `fleet hub --preset`), checked
    before any work; None means the preset's own size."""
    if preset not in PRESETS:
        raise UserError("--preset", f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if models is not None and models < 2:
        raise UserError("--models", "need at least 2 models (the official checkpoints)")
    n_tasks = len(PRESETS[preset].tasks)
    if items is not None and items < n_tasks:
        raise UserError("--items", f"need at least {n_tasks} items (one per task)")
    if seed < 0:
        raise UserError("--seed", "must be >= 0")


def _generate(args: argparse.Namespace) -> int:
    check_tree_flags(args.preset, args.models, args.items, args.seed)
    out = check_writable(args.out, "--out", suffix=".npz")
    try:
        tree = generate(args.preset, args.seed, models=args.models, items=args.items)
    except MemoryError as err:
        flag = "--items" if args.items is not None else "--models"
        raise UserError(flag, f"pool too large for this machine's memory ({err})") from None
    try:
        # The tree's shape rides along so `gemfinder fleet hub` can serve it as a model tree.
        save_npz(tree.matrix, out, extra=tree_arrays(tree))
    except OSError as err:
        raise UserError("--out", f"cannot write {out}: {err.strerror}") from None
    m = marginals(tree.matrix)
    print(
        f"wrote {out}: {m['models']} models x {m['items']} items, mean {m['random_mean']:.3f}, "
        f"best {m['best_acc']:.3f}, best base {m['base_acc']:.3f} (rank {m['base_rank']:.1f})"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    print(
        f"{'preset':<12} {'models':>6} {'items':>5} {'mean':>6} {'base':>6} {'rank':>6} {'best':>6}"
    )
    for name, cfg in PRESETS.items():
        t = cfg.targets
        items = sum(cfg.tasks.values())
        print(
            f"{name:<12} {t.pool_size:>6} {items:>5} {t.random_mean:>6.3f} {t.base_acc:>6.3f} "
            f"{t.base_rank:>6.1f} {t.best_acc:>6.3f}"
        )
    print("targets: published marginals (gsm8k: illustrative); see docs/trees.md")
    return 0


def _stats(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.file, field="file")
    pool = marginals(matrix)
    for key, value in pool.items():
        shown = "n/a (no downloads)" if value is None else _fmt(value)
        print(f"{key:<20} {shown}")
    per_task = task_accuracies(matrix)
    if len(per_task) > 1 or "" not in per_task:
        for task, acc in per_task.items():
            count = sum(1 for item in matrix.items if item.startswith(f"{task}/"))
            print(f"task {task:<15} items {count:>6}  mean {acc.mean():.3f}  best {acc.max():.3f}")
    for key, value in agreement(matrix.correct).items():
        if key in pool:  # agreement() repeats the pool size for the realism tables
            continue
        print(f"{key:<20} {_fmt(value)}")
    return 0


def _fmt(value: float | int) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return str(int(value))
