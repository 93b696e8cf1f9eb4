"""Generate a synthetic model tree: a correctness matrix with names, downloads and base flags.

One seed fixes everything (numpy PCG64; independent child streams per component, so changing
e.g. the naming code never changes the matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.sim.trees import irt, popularity
from gemfinder.sim.trees.presets import TreeConfig, get_preset
from gemfinder.sim.trees.structure import INSTRUCT, PRETRAINED, Tree, grow_tree


@dataclass(frozen=True)
class SyntheticTree:
    """A generated pool plus the latent structure behind it (for tests and diagnostics)."""

    matrix: CorrectnessMatrix
    config: TreeConfig
    tree: Tree
    items: irt.ItemBank
    ability: np.ndarray  # general ability g per model

    @property
    def item_tasks(self) -> list[str]:
        """Task name of each item (also the prefix of each item id)."""
        return [self.items.tasks[t] for t in self.items.task_of]

    @property
    def relations(self) -> list[str]:
        """Each model's relation to its parent as the Hub's model tree names it ("" for the root).

        Light-touch steps (tiny skill change, answers close to the parent) play LoRA adapters,
        `"adapter"`; every other step is a `"finetune"` (the instruct model is one of the
        pretrained model, as on the Hub).
        """
        return [
            "" if p < 0 else ("adapter" if light else "finetune")
            for p, light in zip(self.tree.parent.tolist(), self.tree.light.tolist(), strict=True)
        ]


def generate(
    preset: str | TreeConfig,
    seed: int,
    models: int | None = None,
    items: int | None = None,
) -> SyntheticTree:
    """Generate the pool of `preset` (name or config); `models`/`items` override its size."""
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    cfg = cfg.with_size(models, items)
    streams = np.random.SeedSequence([int(seed), 0x6E7F]).spawn(5)
    rng_tree, rng_items, rng_resid, rng_drift, rng_pop = (np.random.default_rng(s) for s in streams)
    tree = grow_tree(cfg, cfg.targets.pool_size, rng_tree)
    bank = irt.make_items(cfg, rng_items)
    residuals = irt.inherited_residuals(cfg, tree, bank.n_items, rng_resid)
    drifts = irt.task_drifts(cfg, tree, len(bank.tasks), rng_drift)
    correct, ability = irt.answer(cfg, tree, bank, residuals, drifts)
    accuracy = correct.mean(axis=1)
    is_base = np.zeros(tree.n_models, dtype=bool)
    is_base[[PRETRAINED, INSTRUCT]] = True
    matrix = CorrectnessMatrix(
        correct=np.ascontiguousarray(correct),
        models=popularity.names(cfg, tree, rng_pop),
        items=bank.ids(),
        downloads=popularity.downloads(cfg, tree, accuracy, rng_pop),
        is_base=is_base,
    )
    return SyntheticTree(matrix, cfg, tree, bank, ability)


def tree_arrays(tree: SyntheticTree) -> dict[str, np.ndarray]:
    """The tree's shape as .npz arrays: `parent` (row index, -1 for the root) and `relation`."""
    return {
        "parent": np.asarray(tree.tree.parent, dtype=np.int64),
        "relation": np.asarray(tree.relations, dtype=str),
    }
