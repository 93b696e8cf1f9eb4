"""MBPP: code extraction, program order, and grading sampled reference solutions in the sandbox."""

from __future__ import annotations

import json

import pytest
from gemfinder.tasks import Item, get_task
from gemfinder.tasks.mbpp import build_program, extract_code

KNOWN_BROKEN = {341, 596, 642}  # Python-version dependent, see mbpp/SOURCE.md


@pytest.mark.parametrize(
    "response, code",
    [
        ("def f(x):\n    return x\n[DONE]", "def f(x):\n    return x"),
        ("[BEGIN]\ndef f(x):\n    return x\n[DONE]\nmore text", "def f(x):\n    return x"),
        ("Here:\n```python\ndef f(x):\n    return x\n```\nDone.", "def f(x):\n    return x"),
        ("```\ndef f(x):\n    return x\n```", "def f(x):\n    return x"),
        (
            "```python\nprint(f(1))\n```\n```python\ndef f(x):\n    return x\n```",
            "def f(x):\n    return x",
        ),
        ("Sure:\n```python\ndef f(x):\n    return x", "def f(x):\n    return x"),  # cut off
        (" \n[PYTHON]\ndef f(x):\n    return x\n[/PYTHON]\n[TESTS]", "def f(x):\n    return x"),
        ("def f(x):\r\n    return x\r\n", "def f(x):\n    return x"),
    ],
)
def test_extract_code(response, code):
    assert extract_code(response).strip() == code


def test_program_order_is_code_setup_asserts():
    program = build_program("class Node: pass", "root = Node()", ["assert root"])
    assert program.index("class Node") < program.index("root = Node()") < program.index("assert")


def _item(**fields):
    base = {"text": "Write f.", "test_list": ["assert f(2) == 4", "assert f(0) == 0"]}
    return Item("m1", "mbpp", {**base, **fields})


def test_grade_pass_fail_and_no_code():
    task = get_task("mbpp")
    good = task.grade(_item(), "def f(x):\n    return 2 * x\n[DONE]")
    assert good.correct and good.extracted.startswith("def f")
    assert not task.grade(_item(), "def f(x):\n    return x + 2\n").correct
    assert not task.grade(_item(), "def f(x):\n    return (\n").correct  # syntax error
    empty = task.grade(_item(), "   \n[DONE]")
    assert empty.correct is False and empty.extracted is None


def test_prompt_follows_lm_eval_harness():
    prompt = get_task("mbpp").build_prompt(_item(), False)
    assert prompt.text.startswith("You are an expert Python programmer, and here is your task: ")
    assert prompt.text.endswith("assert f(2) == 4\nassert f(0) == 0\n[BEGIN]\n")
    assert get_task("mbpp").generation.stop == ("[DONE]",)


def test_sampled_reference_solutions_pass_and_wrong_ones_fail(shared_data):
    task = get_task("mbpp")
    records = [
        json.loads(x) for x in (shared_data / "mbpp" / "mbpp.jsonl").read_text().split("\n") if x
    ]
    # Every 40th task plus the two whose setup needs the reference code's class.
    sample = [r for r in records if r["task_id"] % 40 == 1 or r["task_id"] in (367, 927)]
    for rec in sample:
        item = Item(str(rec["task_id"]), "mbpp", rec)
        assert task.grade(item, f"```python\n{rec['code']}\n```").correct is (
            rec["task_id"] not in KNOWN_BROKEN
        ), rec["task_id"]
        assert not task.grade(item, "def unrelated():\n    pass\n").correct
