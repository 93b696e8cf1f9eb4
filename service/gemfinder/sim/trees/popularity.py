"""Popularity and names: heavy-tailed downloads loosely tied to quality, Hub-like repo names.

Downloads are log-normal (log10 sd about 1: a few fine-tunes take most downloads, most have a
handful) with a weak pull towards accuracy and a cost per level of depth in the tree, as deep
fine-tunes of fine-tunes are rarely found. The official checkpoints are the most downloaded,
the anchor first.
"""

from __future__ import annotations

import numpy as np

from gemfinder.sim.trees.presets import TreeConfig
from gemfinder.sim.trees.structure import INSTRUCT, PRETRAINED, Tree

_ORG_A = (
    "nova", "blue", "deep", "open", "tiny", "swift", "lumen", "iron", "quiet", "north",
    "amber", "polar", "cedar", "rapid", "vector", "delta", "echo", "prime", "lucky", "misty",
)  # fmt: skip
_ORG_B = (
    "labs", "ai", "ml", "research", "models", "forge", "works", "hub", "collective", "tuning",
)  # fmt: skip
_RECIPES = (
    "sft", "dpo", "orpo", "kto", "chat", "math", "code", "reasoning", "merge", "slerp",
    "ties", "roleplay", "instruct", "distill", "lora", "qlora", "abliterated", "uncensored",
    "medical", "legal", "finance", "multilingual", "rp", "hermes", "dolphinish", "openhermes",
)  # fmt: skip


def downloads(cfg: TreeConfig, tree: Tree, accuracy: np.ndarray, rng: np.random.Generator):
    """Downloads per model (float64, >= 0); officials on top, the anchor first."""
    spread = accuracy.std() or 1.0
    quality = (accuracy - accuracy.mean()) / spread
    log10 = (
        cfg.downloads_level
        + cfg.downloads_sd * rng.standard_normal(tree.n_models)
        + cfg.downloads_quality_weight * quality
        - cfg.downloads_depth_cost * np.maximum(tree.depth - 1, 0)
    )
    counts = np.floor(10.0**log10)
    top = counts[2:].max() if tree.n_models > 2 else 1000.0
    other = PRETRAINED if tree.anchor == INSTRUCT else INSTRUCT
    counts[tree.anchor] = np.floor(top * (8.0 + 4.0 * rng.random()))
    counts[other] = np.floor(top * (2.0 + 2.0 * rng.random()))
    return counts


def names(cfg: TreeConfig, tree: Tree, rng: np.random.Generator) -> list[str]:
    """Unique repo names: officials as published, fine-tunes `org/<Base>-<recipe>[-vN]`.

    A family keeps one org and recipe; its later releases and descendants get version suffixes.
    """
    n_families = int(tree.family.max()) + 1 if (tree.family >= 0).any() else 0
    fam_org = [
        f"{_ORG_A[rng.integers(len(_ORG_A))]}-{_ORG_B[rng.integers(len(_ORG_B))]}"
        for _ in range(n_families)
    ]
    fam_recipe = [_RECIPES[rng.integers(len(_RECIPES))] for _ in range(n_families)]
    out = [cfg.official[0], cfg.official[1]]
    seen = set(out)
    releases = np.zeros(n_families, dtype=np.int64)
    for k in range(2, tree.n_models):
        fam = int(tree.family[k])
        releases[fam] += 1
        stem = f"{fam_org[fam]}/{cfg.base_short}-{fam_recipe[fam]}"
        name = stem if releases[fam] == 1 else f"{stem}-v{releases[fam]}"
        while name in seen:  # two families drew the same org and recipe
            name = f"{name}-{k}"
        seen.add(name)
        out.append(name)
    return out
