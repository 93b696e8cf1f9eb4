"""Public scores as priors: candidates' prior_score reaches gem search's ranking, all or none."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder import _core
from gemfinder.candidates import Candidate, candidate_from_dict
from gemfinder.errors import UserError
from gemfinder.search.spec import Limits, SearchSpec
from gemfinder.server.convert import spec_from_proto, spec_to_proto

from tests.fleet_support import make_items


def finish(sched: _core.Scheduler, correct: np.ndarray) -> int:
    while not sched.finished:
        for model, item in sched.ask():
            sched.tell(model, item, bool(correct[model, item]))
    return sched.recommendation


def test_gem_settles_ties_by_the_prior_and_is_unchanged_without_one():
    correct = np.ones((8, 40), dtype=np.uint8)  # every model answers alike: all tie
    priors = [(1.0 + 5 * s, 1.0 + 5 * (1 - s)) for s in np.linspace(0.3, 0.6, 8)]
    picks = {
        finish(_core.Scheduler("gem", 8, 40, 80, seed, priors=priors), correct) for seed in range(6)
    }
    assert picks == {7}  # the highest prior score
    flat = {finish(_core.Scheduler("gem", 8, 40, 80, seed), correct) for seed in range(6)}
    assert len(flat) > 1  # ties go to the seeded random key
    # The evidence still wins: a model right where the favourite is wrong comes out on top.
    correct[7, :20] = 0
    assert finish(_core.Scheduler("gem", 8, 40, 320, 0, priors=priors), correct) != 7


def candidates(scores):
    return [
        Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}", prior_score=s)
        for k, s in enumerate(scores)
    ]


def test_spec_turns_scores_into_priors_all_or_none():
    items = make_items(5, tasks=("mmlu",))
    spec = SearchSpec(candidates([0.2, 0.8]), items, budget=20, prior_strength=10)
    assert np.allclose(spec.priors(), [(3.0, 9.0), (9.0, 3.0)])
    spec.validate()
    assert SearchSpec.from_dict(spec.to_dict()).priors() == spec.priors()
    assert SearchSpec(candidates([None, None]), items, budget=20).priors() is None
    with pytest.raises(UserError) as err:
        SearchSpec(candidates([0.5, None]), items, budget=20).validate()
    assert err.value.field == "spec.candidates[1].prior_score"
    with pytest.raises(UserError) as err:
        SearchSpec(candidates([0.5, 0.5]), items, budget=20, prior_strength=0).validate()
    assert err.value.field == "spec.prior_strength"


@pytest.mark.parametrize("bad", [1.5, -0.1, "high", True])
def test_a_bad_prior_score_names_its_field(bad):
    with pytest.raises(UserError) as err:
        candidate_from_dict({"model_id": "m", "endpoint": "http://h:80", "prior_score": bad})
    assert err.value.field == "candidate.prior_score"


def test_the_request_carries_scores_and_strength():
    items = make_items(5, tasks=("mmlu",))
    msg = spec_to_proto(candidates([0.1, 0.9, 0.5]), items, 10, prior_strength=20.0)
    spec = spec_from_proto(msg, {}, 10, Limits())
    assert [c.prior_score for c in spec.candidates] == [0.1, 0.9, 0.5]
    assert spec.prior_strength == 20.0 and spec.priors()[1] == pytest.approx((19.0, 3.0))
    plain = spec_from_proto(spec_to_proto(candidates([None] * 3), items, 10), {}, 10, Limits())
    assert plain.priors() is None and plain.prior_strength == 5.0
    # A request naming no algorithm gets the default, whose ranking must use the scores.
    assert (spec.algorithm, plain.algorithm) == ("bayes_elim", _core.DEFAULT_ALGORITHM)


def test_the_default_uses_scores_and_a_named_algorithm_is_kept():
    """The default (correlated SH, docs/results.md) becomes bayes_elim when every candidate has
    a score: the same search ranking by posterior mean. A prior that favours the worst of
    equal models then decides the pick, which sh_correlated (raw counts) would ignore."""
    items = make_items(5, tasks=("mmlu",))
    scored = SearchSpec(candidates([0.9, 0.1, 0.1, 0.1]), items, budget=20)
    assert scored.algorithm == "bayes_elim"
    assert SearchSpec(candidates([None, None]), items, budget=20).algorithm == "sh_correlated"
    named = SearchSpec(candidates([0.9, 0.1]), items, budget=20, algorithm="gem")
    assert named.algorithm == "gem" and SearchSpec.from_dict(named.to_dict()).algorithm == "gem"
    correct = np.ones((4, 40), dtype=np.uint8)  # all tie on answers: only the prior separates
    priors = scored.priors()
    picks = {finish(_core.Scheduler("bayes_elim", 4, 40, 80, s, priors=priors), correct)
             for s in range(6)}  # fmt: skip
    assert picks == {0}
