"""Query-set loading: valid files and every kind of error, each naming the line."""

from __future__ import annotations

import json

import pytest
from gemfinder.errors import UserError
from gemfinder.tasks import Item, load_query_set

ARC = {"task": "arc_challenge", "question": "q", "choices": ["a", "b", "c", "d"], "answer": "B"}
GSM = {"task": "gsm8k", "question": "q", "answer": "#### 3"}
MBPP = {"task": "mbpp", "text": "t", "test_list": ["assert f() == 1"]}


def _write(tmp_path, lines):
    path = tmp_path / "qs.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_loads_items_in_order(tmp_path):
    path = _write(tmp_path, [{"id": "a", **ARC}, "", {"id": 2, **GSM}, {"id": "m", **MBPP}])
    items = load_query_set(path)
    assert [i.id for i in items] == ["a", "2", "m"]
    assert items[0] == Item("a", "arc_challenge", {k: v for k, v in ARC.items() if k != "task"})


@pytest.mark.parametrize(
    "lines, line, reason",
    [
        (["{not json"], 1, "bad JSON"),
        ([[1, 2]], 1, "expected a JSON object"),
        ([ARC], 1, "missing 'id'"),
        ([{"id": "x", "question": "q"}], 1, "missing 'task'"),
        ([{"id": "a", **ARC}, {"id": "a", **GSM}], 2, "duplicate id 'a' (first on line 1)"),
        ([{"id": "a", **ARC, "task": "hellaswag"}], 1, "unknown task 'hellaswag'"),
        ([{"id": "a", "task": "gsm8k", "question": "q"}], 1, "needs field(s) answer"),
        ([{"id": "a", **ARC, "answer": "E"}], 1, "not one of the labels"),
        ([{"id": "a", **ARC, "choices": ["only"]}], 1, "choices must be"),
        ([{"id": "a", **MBPP, "test_list": []}], 1, "test_list"),
        ([{"id": "a", **GSM, "answer": "no number"}], 1, "#### <number>"),
    ],
)
def test_errors_name_line_and_problem(tmp_path, lines, line, reason):
    path = _write(tmp_path, lines)
    with pytest.raises(UserError) as err:
        load_query_set(path)
    assert err.value.field == f"{path}:{line}"
    assert reason in err.value.reason


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_query_set(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="empty"):
        load_query_set(_write(tmp_path, [""]))
