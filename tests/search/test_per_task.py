"""Per-task results and the overall ranking under task weights (search.per_task)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.search.per_task import counts_of, item_tasks, per_task, wilson
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Estimate, Result
from gemfinder.store import open_store
from gemfinder.tasks import Item

from tests.fleet_support import make_items


def tasks_of(spec, ranking, pulls):
    return per_task(spec, ranking, counts_of(spec, pulls))


def two_task_spec(arc: int = 30, gsm: int = 10, **kw) -> SearchSpec:
    items = make_items(max(arc, gsm), tasks=("arc_challenge", "gsm8k"))
    keep = [it for it in items if it.task == "arc_challenge"][:arc]
    keep += [it for it in items if it.task == "gsm8k"][:gsm]
    cands = [
        Candidate("A", "http://h:1"),
        Candidate("B", "http://h:2"),
        Candidate("C", "http://h:3"),
    ]
    return SearchSpec(cands, keep, budget=3 * len(keep), **kw)


def specialists(spec: SearchSpec) -> dict[int, dict[int, int]]:
    """A: every arc item right, every gsm8k item wrong; B the reverse; C half of each."""
    out: dict[int, dict[int, int]] = {0: {}, 1: {}, 2: {}}
    for i, it in enumerate(spec.items):
        arc = it.task == "arc_challenge"
        out[0][i], out[1][i], out[2][i] = int(arc), int(not arc), i % 2
    return out


def ranking_of(spec: SearchSpec, pulls) -> tuple[Estimate, ...]:
    """The search's own estimates (plain counts), in candidate order as ranks."""
    out = []
    for m, cand in enumerate(spec.candidates):
        rewards = list(pulls[m].values())
        out.append(Estimate(cand.model_id, rank=m + 1, accuracy=sum(rewards) / len(rewards),
                            items_seen=len(rewards), successes=sum(rewards)))  # fmt: skip
    return tuple(out)


def test_each_task_ranks_its_own_specialist_first():
    spec = two_task_spec()
    tasks, _ = tasks_of(spec, ranking_of(spec, specialists(spec)), specialists(spec))
    by_task = {t.task: t for t in tasks}
    assert list(by_task) == ["arc_challenge", "gsm8k"]
    assert by_task["arc_challenge"].items == 30 and by_task["gsm8k"].items == 10
    assert by_task["arc_challenge"].estimates[0].model_id == "A"
    assert by_task["gsm8k"].estimates[0].model_id == "B"
    assert [e.rank for e in by_task["gsm8k"].estimates] == [1, 2, 3]
    top = by_task["gsm8k"].estimates[0]
    assert (top.items_seen, top.successes, top.accuracy) == (10, 10, 1.0)


def test_default_weights_give_the_plain_accuracy_and_weights_change_the_order():
    spec = two_task_spec()
    pulls = specialists(spec)
    ranking = ranking_of(spec, pulls)
    tasks, overall = tasks_of(spec, ranking, pulls)
    assert [t.weight for t in tasks] == [0.75, 0.25]  # shares of the items
    by_id = {e.model_id: e for e in overall}
    for est in ranking:  # exactly the search's estimate: same counts, same interval
        got = by_id[est.model_id]
        assert (got.accuracy, got.items_seen, got.successes) == (
            est.accuracy, est.items_seen, est.successes,
        )  # fmt: skip
    assert [e.model_id for e in overall] == ["A", "C", "B"]  # 30/40, 20/40, 10/40

    weighted = two_task_spec(task_weights={"gsm8k": 3.0})  # arc weighs 1: gsm8k 0.75
    tasks, overall = tasks_of(weighted, ranking, pulls)
    assert [t.weight for t in tasks] == [0.25, 0.75]
    assert [e.model_id for e in overall] == ["B", "C", "A"]
    assert math.isclose(overall[0].accuracy, 0.75) and overall[0].items_seen == 40
    lower, upper = overall[0].lower, overall[0].upper
    assert lower < 0.75 < upper  # an interval at the effective sample size, not 40 items


def test_a_task_weighing_zero_leaves_the_overall_ranking():
    spec = two_task_spec(task_weights={"arc_challenge": 0.0})
    pulls = specialists(spec)
    _, overall = tasks_of(spec, ranking_of(spec, pulls), pulls)
    assert overall[0].model_id == "B" and overall[0].items_seen == 10
    assert overall[0].accuracy == 1.0


def test_a_model_graded_on_a_few_lucky_items_does_not_lead_a_task():
    spec = two_task_spec(arc=40, gsm=40)
    pulls = {0: {}, 1: {}, 2: {}}
    gsm = [i for i, it in enumerate(spec.items) if it.task == "gsm8k"]
    pulls[0] = {i: int(k < 34) for k, i in enumerate(gsm)}  # 34/40
    pulls[1] = {i: 1 for i in gsm[:3]}  # 3/3, eliminated early
    pulls[2] = {i: 0 for i in gsm[:5]}
    tasks, _ = tasks_of(spec, ranking_of(spec, {m: p or {0: 0} for m, p in pulls.items()}), pulls)
    gsm8k = next(t for t in tasks if t.task == "gsm8k")
    assert [e.model_id for e in gsm8k.estimates] == ["A", "B", "C"]
    arc = next(t for t in tasks if t.task == "arc_challenge")
    assert arc.estimates == ()  # nobody was graded on an arc item


def test_one_task_has_no_per_task_results():
    items = make_items(5, tasks=("mmlu",))
    spec = SearchSpec([Candidate("A", "http://h:1"), Candidate("B", "http://h:2")], items, 10)
    pulls = {0: {0: 1}, 1: {0: 0}}
    assert tasks_of(spec, ranking_of(spec, pulls), pulls) == ((), ())


def test_lm_eval_items_are_reported_under_their_lm_eval_task():
    fields = {"lm_eval": {"task": "hellaswag"}, "output_type": "multiple_choice"}
    from gemfinder.tasks import task_label

    assert task_label(Item("hellaswag/0", "lm_eval", fields)) == "hellaswag"
    assert task_label(Item("x/0", "lm_eval", {})) == "lm_eval"


@pytest.mark.parametrize(
    ("weights", "field", "reason"),
    [
        ({"hellaswag": 1.0}, "spec.task_weights[hellaswag]", "no item of the query set"),
        ({"gsm8k": -1.0}, "spec.task_weights[gsm8k]", ">= 0"),
        ({"gsm8k": float("nan")}, "spec.task_weights[gsm8k]", "finite"),
        ({"gsm8k": True}, "spec.task_weights[gsm8k]", "finite"),
        ({"gsm8k": 0.0, "arc_challenge": 0.0}, "spec.task_weights[arc_challenge]", "every task"),
    ],
)
def test_bad_task_weights_are_refused_naming_the_task(weights, field, reason):
    spec = two_task_spec(task_weights=weights)
    with pytest.raises(UserError) as err:
        spec.validate()
    assert err.value.field == field and reason in err.value.reason


def test_weights_are_part_of_the_spec_and_its_digest_only_when_set():
    plain = two_task_spec()
    assert "task_weights" not in plain.to_dict()
    weighted = two_task_spec(task_weights={"gsm8k": 2.0})
    assert weighted.digest() != plain.digest()
    assert SearchSpec.from_dict(weighted.to_dict()).task_weights == {"gsm8k": 2.0}


def test_wilson_matches_the_core_at_whole_counts():
    from gemfinder import _core

    for hits, n in [(0, 5), (3, 4), (8, 10), (10, 10)]:
        assert np.allclose(wilson(hits / n, n), _core.wilson_interval(hits, n))


def test_per_task_results_round_trip_through_json_and_the_proto():
    from gemfinder.server.convert import result_from_proto, result_to_proto

    spec = two_task_spec(task_weights={"gsm8k": 3.0})
    pulls = specialists(spec)
    ranking = ranking_of(spec, pulls)
    tasks, overall = tasks_of(spec, ranking, pulls)
    result = Result(recommended_model_id="A", ranking=ranking, winner=ranking[0],
                    per_task=tasks, overall=overall)  # fmt: skip
    assert Result.from_json(result.to_json()) == result
    assert result_from_proto(result_to_proto(result)) == result
    assert "per_task" not in Result(ranking=ranking).to_json()  # single task: stored as before


def test_the_stores_count_per_model_and_task_as_python_does(new_db):
    spec = two_task_spec(arc=12, gsm=7)
    pulls = specialists(spec)
    pulls[2] = {i: r for i, r in pulls[2].items() if i % 3}  # not every item
    store = open_store(new_db("c.db"))
    try:
        store.create_search("s", None, {})
        store.put_answers(
            "s", [(f"k{m}-{i}", m, i, r) for m, d in pulls.items() for i, r in d.items()]
        )
        store.put_skipped("s", [(0, 99)])  # a skipped pull is no answer
        assert store.task_counts("s", item_tasks(spec)[1]) == counts_of(spec, pulls)
        assert store.task_counts("s", item_tasks(spec)[1]) == counts_of(spec, pulls)  # again
    finally:
        store.close()
