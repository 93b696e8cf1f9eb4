"""Synthetic model trees: pools of a base model and its fine-tunes graded 0/1 on benchmark items.

`generate(preset, seed)` returns a `SyntheticTree`; `PRESETS` holds the calibrated published
trees; `stats` and `calibration` measure how close a pool comes to its targets. See docs/trees.md.
"""

from gemfinder.sim.trees.generate import SyntheticTree, generate
from gemfinder.sim.trees.presets import PRESETS, Targets, TreeConfig, get_preset

__all__ = ["PRESETS", "SyntheticTree", "Targets", "TreeConfig", "generate", "get_preset"]
