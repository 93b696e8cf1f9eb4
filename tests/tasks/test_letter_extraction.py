"""Multiple-choice letter extraction and grading, including 1-4 keys and stop stripping."""

from __future__ import annotations

import pytest
from gemfinder.tasks import Item, get_task
from gemfinder.tasks.multiple_choice import extract_letter

CHOICES = ["dry palms", "wet palms", "palms covered with oil", "palms covered with lotion"]


@pytest.mark.parametrize(
    "response, letter",
    [
        ("C", "C"),
        ("C\n", "C"),
        (" C.", "C"),
        ("(C)", "C"),
        ("C) palms covered with oil", "C"),
        ("The answer is C.", "C"),
        ("The correct answer is (C).", "C"),
        ("Answer: C", "C"),
        ("answer: C because oil", "C"),
        ("I think the best option is C, since oil reduces friction.", "C"),
        ("**C**", "C"),
        ("C\nExplanation: A and B are wrong.", "C"),
        ("D (", "D"),
        ("palms covered with oil", "C"),
        ("Wet palms.", "B"),
        ("E", None),  # only four options
        ("A fold is a bend in rock layers.", None),  # article, not a letter
        ("I do not know.", None),
        ("", None),
        ("The answer is", None),
    ],
)
def test_extract_letter(response, letter):
    assert extract_letter(response, CHOICES) == letter


def test_five_options_allow_e():
    assert extract_letter("E", CHOICES + ["none"]) == "E"


def _item(**fields):
    base = {"question": "Which surface produces most heat?", "choices": CHOICES, "answer": "A"}
    return Item("1", "arc_challenge", {**base, **fields})


def test_numeric_labels_map_to_letters():
    task = get_task("arc_challenge")
    item = _item(labels=["1", "2", "3", "4"], answer="3")
    assert task.grade(item, "C").correct
    assert not task.grade(item, "A").correct
    assert "C. palms covered with oil" in task.build_prompt(item, False).text


def test_no_letter_is_wrong_not_an_error():
    grade = get_task("arc_challenge").grade(_item(), "I cannot answer that.")
    assert grade.correct is False and grade.extracted is None


def test_stop_sequence_is_stripped_before_grading():
    task = get_task("mmlu")
    assert task.grade(_item(), "A\nQuestion:").extracted == "A"


def test_winogrande_two_options():
    task = get_task("winogrande")
    item = Item(
        "w1",
        "winogrande",
        {
            "question": "Kyle doesn't wear leg warmers, Logan does. _ lives somewhere colder.",
            "choices": ["Kyle", "Logan"],
            "answer": "B",
        },
    )
    assert task.grade(item, "B").correct
    assert task.grade(item, "Logan").correct
    assert not task.grade(item, "C").correct
    prompt = task.build_prompt(item, True)
    assert prompt.messages[0]["role"] == "system" and "B. Logan" in prompt.messages[1]["content"]


def test_prompts_with_and_without_system_prompt():
    task = get_task("arc_challenge")
    with_sys = task.build_prompt(_item(), True)
    without = task.build_prompt(_item(), False)
    assert [m["role"] for m in with_sys.messages] == ["system", "user"]
    assert [m["role"] for m in without.messages] == ["user"]
    assert without.messages[0]["content"] == without.text
    assert without.text.endswith("Answer:")
    assert task.generation.max_new_tokens == 50
