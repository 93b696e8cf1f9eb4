"""The fleet answers each task in the form its task kind declares (Task.answer_form), and
refuses, naming them, items of a task whose form it cannot write, instead of answering them
with made-up text."""

from __future__ import annotations

import json
import random

import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.cli import main
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.responder import FORMS, UnanswerableTasks, respond
from gemfinder.sim.fleet.synthetic_items import write_jsonl
from gemfinder.sim.matrix import save_npz
from gemfinder.tasks import TASKS, Item, parse_item
from gemfinder.tasks.multiple_choice import MultipleChoiceTask
from gemfinder.tasks.registry import TASKS as REGISTERED

MODELS = ["org/base", "org/lora"]
QUESTION = {"question": "Which gas do plants take in to make sugar?",
            "choices": ["Oxygen", "Carbon dioxide", "Helium", "Neon"], "answer": "B"}  # fmt: skip


class Riddles(MultipleChoiceTask):
    """A new task kind, as a query-set module would add one."""

    name = "riddles"


class Haiku(MultipleChoiceTask):
    name = "haiku"
    answer_form = "seventeen_syllables"  # no fleet reply writes this


@pytest.fixture
def new_tasks(monkeypatch):
    monkeypatch.setitem(REGISTERED, "riddles", Riddles())
    monkeypatch.setitem(REGISTERED, "haiku", Haiku())


def _items(task: str, n: int = 3) -> list[Item]:
    records = [
        {"id": f"{task}/{i}", "task": task, **QUESTION, "question": f"{QUESTION['question']} ({i})"}
        for i in range(n)
    ]
    return [parse_item(json.dumps(record), "item") for record in records]


def test_every_registered_task_has_a_form_the_fleet_writes():
    assert {task.answer_form for task in TASKS.values()} <= set(FORMS)


async def test_a_new_task_kind_is_answered_in_its_declared_form(new_tasks):
    items = _items("riddles")
    matrix = make_matrix(items, MODELS, seed=2)
    spec = {"name": "e", "model_id": MODELS[0], "adapters": {"lora": MODELS[1]}}
    async with Fleet(fleet_config(spec), matrix, items) as fleet:
        url = fleet.url("e")
        oracle = InferenceOracle([EndpointConfig(url, adapters=("lora",))], policy=FAST_RETRY)
        cands = [Candidate(MODELS[0], url), Candidate(MODELS[1], url, adapter_id="lora")]
        results = [await oracle.answer(c, it) for c in cands for it in items]
        await oracle.aclose()
    assert [r.reward for r in results] == [
        expected(matrix, m, it.id) for m in MODELS for it in items
    ]


def test_a_task_without_a_known_form_is_refused_by_name(new_tasks, monkeypatch):
    monkeypatch.setattr(Riddles, "answer_form", "")  # declares none, as the Task default
    items = _items("riddles") + _items("haiku") + _items("mmlu", 1)
    matrix = make_matrix(items, MODELS)
    with pytest.raises(UnanswerableTasks) as err:
        Fleet(fleet_config({"name": "e", "model_id": MODELS[0]}), matrix, items)
    assert "riddles (no answer_form), haiku (seventeen_syllables)" in str(err.value)
    assert "mmlu" not in str(err.value)
    with pytest.raises(UnanswerableTasks, match="haiku"):  # never the old default reply
        respond(items[3], True, random.Random(0), chat=False)


def test_fleet_serve_refuses_such_a_query_set_naming_the_flag(new_tasks, tmp_path, capsys):
    items = _items("haiku")
    save_npz(make_matrix(items, MODELS), tmp_path / "m.npz")
    write_jsonl([{"id": it.id, "task": it.task, **it.fields} for it in items], tmp_path / "q")
    argv = ["fleet", "serve", "--matrix", str(tmp_path / "m.npz"), "--endpoints", "1"]
    assert main([*argv, "--query-set", str(tmp_path / "q"), "--duration", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemfinder fleet: error: --query-set:") and "haiku" in err
