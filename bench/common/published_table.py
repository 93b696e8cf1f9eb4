"""The published results the bench reproduces, copied from ../shared/design/search.md.

Source: the table "Published results to reproduce and beat (mean rank / accuracy of the returned
model)" in design/search.md and the sentence below it giving the other N=10 rows (mean ranks
only). Mean over 100 repetitions on private matrices of about 3,000 items per model.
Keys: (algorithm, queries per model or None when the row does not query). "reference" is the
reference method; "best" is the best available model.

The reference method is gem search with the published first cut m = 100. Its first-round share f
is not published; 0.2 is the share that reproduces its published ranks best on the presets
(bench/studies/search_shape_table.py, docs/results.md), so the reference row runs with it.
"""

from __future__ import annotations

PRESETS = ("qwen2.5-3b", "qwen2.5-7b", "mistral-7b", "llama3.1-8b")

# (mean rank, mean accuracy) of the returned model; accuracy None where only ranks are given.
_COLUMNS: dict[tuple[str, int | None], tuple[tuple[float, float | None], ...]] = {
    ("random", None): ((233.8, 0.588), (318.4, 0.599), (144.6, 0.431), (270.8, 0.601)),
    ("best_base", None): ((56.5, 0.716), (30.0, 0.783), (62.0, 0.556), (41.0, 0.713)),
    ("sh", 10): ((69.3, 0.714), (62.9, 0.777), (15.2, 0.684), (75.2, 0.710)),
    ("reference", 10): ((11.3, 0.726), (15.8, 0.786), (2.6, 0.694), (15.4, 0.725)),
    ("sh", 50): ((41.0, 0.719), (29.6, 0.784), (7.7, 0.690), (29.9, 0.720)),
    ("reference", 50): ((3.5, 0.729), (3.6, 0.790), (1.6, 0.695), (3.0, 0.736)),
    ("best", None): ((1.0, 0.732), (1.0, 0.791), (1.0, 0.696), (1.0, 0.747)),
    ("uniform", 10): ((166.3, None), (173.8, None), (29.5, None), (222.0, None)),
    ("ttts", 10): ((92.6, None), (75.7, None), (14.0, None), (103.6, None)),
    ("sr", 10): ((94.4, None), (128.3, None), (25.6, None), (171.5, None)),
    ("bayes_elim", 10): ((56.4, None), (58.9, None), (13.5, None), (79.9, None)),
    ("ucb_e", 10): ((78.4, None), (83.7, None), (13.6, None), (106.5, None)),
}

REFERENCE_PARAMS = {"first_round_share": 0.2, "first_cut": 100.0}

# Pool sizes as design/search.md estimates them from the random rank (K = 2 x rank - 1).
POOL_SIZE = {"qwen2.5-3b": 467, "qwen2.5-7b": 636, "mistral-7b": 288, "llama3.1-8b": 541}

REPETITIONS = 100  # the published means are over 100 repetitions


def published(
    preset: str, algorithm: str, n_avg: float | None
) -> tuple[float, float | None] | None:
    """Published (mean rank, accuracy) for a preset, algorithm and budget; None if not given."""
    if preset not in PRESETS:
        return None
    key_n = None if algorithm in ("random", "best_base", "best") else int(n_avg or 0)
    column = _COLUMNS.get((algorithm, key_n))
    return None if column is None else column[PRESETS.index(preset)]
