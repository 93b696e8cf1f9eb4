"""GSM8K numeric extraction: strict '#### N', flexible last number, normalisation."""

from __future__ import annotations

import pytest
from gemfinder.tasks import Item, get_task
from gemfinder.tasks.gsm8k import extract_number, reference_number


@pytest.mark.parametrize(
    "response, number",
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("#### -5", "-5"),
        ("The answer is $72.00.", "72.00"),
        ("3 apples and 4 pears make 7.", "7"),
        ("It costs $1,200.", "1200"),
        ("#### 18\nThen 20 more words 99", "18"),  # strict match wins over the last number
        ("no numbers here", None),
    ],
)
def test_extract_number(response, number):
    assert extract_number(response) == number


def test_reference_number():
    assert reference_number("Janet sells 9 eggs.\n#### 18") == "18"
    assert reference_number("1,000") == "1000"
    assert reference_number("#### seven") is None


def _item(answer="Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n#### 18"):
    return Item("g1", "gsm8k", {"question": "How much?", "answer": answer})


@pytest.mark.parametrize(
    "response, correct",
    [
        ("So she makes $18.", True),
        ("#### 18.0", True),
        ("The answer is 18.\n\nQuestion:", True),  # trailing stop sequence stripped
        ("She makes 17 dollars.", False),
        ("", False),
    ],
)
def test_grade(response, correct):
    assert get_task("gsm8k").grade(_item(), response).correct is correct


def test_plain_number_reference_and_prompt():
    task = get_task("gsm8k")
    assert task.grade(_item(answer="72"), "72.0").correct
    prompt = task.build_prompt(_item(), False)
    assert prompt.text.endswith("Question: How much?\nAnswer:")
    assert task.generation.max_new_tokens == 512 and "\n\nQuestion:" in task.generation.stop


def test_reference_solutions_grade_correct(shared_data):
    task = get_task("gsm8k")
    lines = (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:200]
    import json

    for line in lines:
        rec = json.loads(line)
        item = Item("x", "gsm8k", rec)
        assert task.grade(item, rec["answer"]).correct, rec["answer"]
