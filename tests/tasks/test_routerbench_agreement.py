"""Grader agreement with RouterBench's own grades (bench/studies/grader_agreement.py has the
figures)."""

from __future__ import annotations

import pytest

from bench.studies.grader_agreement import mc_agreement

# Measured: ARC-Challenge 99.98% (11,189/11,191), Winogrande 99.96% (9,753/9,757).
THRESHOLDS = {"arc_challenge": 0.995, "winogrande": 0.995}


@pytest.mark.parametrize("task", sorted(THRESHOLDS))
def test_agreement_with_routerbench(shared_data, task):
    results = mc_agreement(shared_data, task)
    assert len(results) > 8000  # gold inferable for nearly every (row, model) pair
    agree = sum(ours == theirs for _, ours, theirs, *_ in results) / len(results)
    assert agree >= THRESHOLDS[task], f"{task}: {agree:.4f}"
    per_model: dict[str, list[bool]] = {}
    for model, ours, theirs, *_ in results:
        per_model.setdefault(model, []).append(ours == theirs)
    for model, v in per_model.items():
        assert sum(v) / len(v) >= 0.98, model
