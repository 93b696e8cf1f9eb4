"""What a simulated model says: a right or wrong answer to an item, in varied realistic text.

The phrasings imitate real completions (a bare letter, "The answer is C.", a worked solution
ending `#### N`, code followed by `[DONE]`, fenced code in chat) including the model running
on into the next few-shot question, which the server's stop sequences then cut off.

Which phrasing an item gets is its task's `answer_form` (gemfinder.tasks registry): `FORMS`
maps each form to the function writing such replies. A task kind with a new form adds one
function and one entry here; a fleet given items of a task whose form is not here refuses to
start (`UnanswerableTasks`), since it could only answer them with made-up text.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Iterable

from gemfinder.tasks import Item, get_task

LETTERS = "ABCDE"
_NEXT_QUESTION = "\nQuestion: Which of the following statements is true?"

# (item, whether the answer is right, the seeded rng, chat or raw prompt) -> raw continuation
Reply = Callable[[Item, bool, random.Random, bool], str]


class UnanswerableTasks(ValueError):
    """Items of tasks whose answer form the fleet cannot write; the message names them."""

    def __init__(self, forms: dict[str, str]) -> None:
        named = ", ".join(f"{task} ({form or 'no answer_form'})" for task, form in forms.items())
        super().__init__(
            f"the simulated fleet cannot answer task(s) {named}: it writes replies of the forms "
            f"{', '.join(FORMS)} (gemfinder/sim/fleet/responder.py), the form a task declares as "
            "its answer_form"
        )


def check_answerable(items: Iterable[Item]) -> None:
    """Raise UnanswerableTasks naming every task of `items` whose answer form is unknown."""
    forms = {}
    for task in dict.fromkeys(item.task for item in items):
        form = get_task(task).answer_form
        if form not in FORMS:
            forms[task] = form
    if forms:
        raise UnanswerableTasks(forms)


def respond(item: Item, correct: bool, rng: random.Random, chat: bool) -> str:
    """The raw continuation a model would produce (stop sequences are applied by the server)."""
    form = get_task(item.task).answer_form
    reply = FORMS.get(form)
    if reply is None:  # Fleet checks its items first: only a caller skipping that gets here
        raise UnanswerableTasks({item.task: form})
    return reply(item, correct, rng, chat)


def _choice_letter(item: Item, correct: bool, rng: random.Random, chat: bool) -> str:
    choices = [str(c).strip() for c in item.fields["choices"]]
    labels = [str(x) for x in (item.fields.get("labels") or LETTERS[: len(choices)])]
    gold = labels.index(str(item.fields["answer"]))
    index = gold if correct else rng.choice([i for i in range(len(choices)) if i != gold])
    letter, text = LETTERS[index], choices[index]
    if chat:
        forms = [
            f"{letter}",
            f"The answer is {letter}.",
            f"The correct answer is {letter}. {text}.",
            f"**{letter}. {text}**",
            f"Answer: {letter}\n\nExplanation: '{text}' fits the question best.",
        ]
        return rng.choice(forms)
    forms = [
        f" {letter}",
        f" {letter}. {text}",
        f" {letter}\n{_NEXT_QUESTION}",
        f" The answer is {letter}.",
        f" ({letter}) {text}\n\n\nQuestion:",
    ]
    return rng.choice(forms)


def _gold_number(answer: object) -> float:
    text = str(answer)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return float(text.strip().replace(",", "").replace("$", "").rstrip("."))


def _format_number(value: float, rng: random.Random) -> str:
    if value != int(value):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    number = int(value)
    if abs(number) >= 1000 and rng.random() < 0.5:
        text = f"{number:,}"
    else:
        text = str(number)
    # Money-like answers sometimes come with a dollar sign; graders must normalise it.
    return f"${text}" if number > 0 and rng.random() < 0.15 else text


def _solution_body(answer: object) -> str:
    text = str(answer)
    if "####" not in text:
        return "Let me work through the quantities in the problem one at a time."
    body = text.rsplit("####", 1)[0]
    body = re.sub(r"<<[^>]*>>", "", body)  # GSM8K's calculator annotations
    return body.strip()


def _final_number(item: Item, correct: bool, rng: random.Random, chat: bool) -> str:
    gold = _gold_number(item.fields["answer"])
    value = gold
    if not correct:
        deltas = [d for d in range(-12, 13) if d] + [gold or 7.0]
        value = gold + rng.choice(deltas)
    number = _format_number(value, rng)
    body = _solution_body(item.fields["answer"])
    lead = "" if chat else " "
    forms = [
        f"{lead}{body}\n#### {number}",
        f"{lead}{body}\nThe answer is {number}.",
        f"{lead}Let's think step by step. {body}\nSo the final answer is {number}.\n\nQuestion:"
        " Tom has 3 more marbles than Ann.",
        f"{lead}{body}\n#### {number}\n\nQuestion: A baker sells 12 loaves a day.",
    ]
    if chat:
        forms.append(f"Step by step:\n{body}\n\n**Final answer:** {number}")
    return rng.choice(forms)


def _function_name(code: str, tests: list[str]) -> str | None:
    names = re.findall(r"^def\s+([A-Za-z_]\w*)", code, re.MULTILINE)
    first_test = tests[0] if tests else ""
    for name in names:
        if re.search(rf"\b{re.escape(name)}\s*\(", first_test):
            return name
    return names[0] if names else None


def lookup_table_code(tests: list[str]) -> str | None:
    """A function answering exactly the asserted calls, for items that ship no reference code."""
    cases: list[str] = []
    name = None
    for test in tests:
        try:
            node = ast.parse(test.strip()).body[0]
        except (SyntaxError, IndexError):
            return None
        cmp = getattr(node, "test", None)
        if not (isinstance(node, ast.Assert) and isinstance(cmp, ast.Compare)):
            return None
        call = cmp.left
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            return None
        if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq) or call.keywords:
            return None
        name = call.func.id
        args = ", ".join(ast.unparse(a) for a in call.args)
        cases.append(f"        (({args},), {ast.unparse(cmp.comparators[0])}),")
    if name is None:
        return None
    body = "\n".join(cases)
    return (
        f"def {name}(*args):\n    cases = [\n{body}\n    ]\n"
        "    for known, result in cases:\n        if known == args:\n            return result\n"
        "    return None"
    )


def reference_code(item: Item) -> str | None:
    code = item.fields.get("code")
    if isinstance(code, str) and code.strip():
        return code.replace("\r\n", "\n").strip("\n")
    return lookup_table_code(list(item.fields.get("test_list") or []))


def broken_code(code: str, tests: list[str], rng: random.Random) -> str:
    """A wrong program that fails the asserts for sure, in one of a few typical ways."""
    name = _function_name(code, tests) or "solution"
    kind = rng.randrange(3)
    if kind == 0:  # misnamed function: the asserts hit a NameError
        return re.sub(rf"\b{re.escape(name)}\b", f"{name}_solution", code)
    if kind == 1:  # a syntax slip on the def line
        broken, n = re.subn(r"^(def [^\n]*\)[^\n:]*):", r"\1", code, count=1, flags=re.MULTILINE)
        if n:
            return broken
    return f"def {name}(*args):\n    # TODO: handle the general case\n    raise NotImplementedError"


def _python_function(item: Item, correct: bool, rng: random.Random, chat: bool) -> str:
    tests = list(item.fields.get("test_list") or [])
    code = reference_code(item)
    if code is None:
        return "# I could not work out a solution for this task.\n[DONE]"
    if not correct:
        code = broken_code(code, tests, rng)
    if chat:
        forms = [
            f"```python\n{code}\n```",
            f"Here is a solution:\n\n```python\n{code}\n```\n\nIt passes the given tests.",
            f"[PYTHON]\n{code}\n[/PYTHON]",
        ]
        return rng.choice(forms)
    forms = [
        f"{code}\n[DONE]",
        f"{code}\n[DONE]\n\nYou are an expert Python programmer, and here is your task:",
        f"```python\n{code}\n```\n[DONE]",
    ]
    return rng.choice(forms)


def _lm_eval_target(item: Item, correct: bool, rng: random.Random, chat: bool) -> str:
    """lm-eval generate_until items scored by exact_match (gsm8k, ...): the gold target as the
    dataset writes it (right) or a non-answer (wrong), then the model running on. Each reply is
    graded with the item's own filters and metric first; an item it would not grade as meant
    (and code items, or multiple-choice items asked for text instead of log-likelihoods, which
    gemfinder.sim.fleet.loglik answers) is refused."""
    fields = item.fields
    kind, metric = fields.get("output_type"), fields.get("metric", {}).get("name")
    if kind != "generate_until" or metric != "exact_match":
        raise UnanswerableTasks({item.task: f"lm_eval_target: not for {kind} / {metric}"})
    target = fields["target"][0] if isinstance(fields["target"], list) else fields["target"]
    reply = str(target) if correct else rng.choice(["I am not sure.", "I cannot tell."])
    if get_task(item.task).grade(item, reply).correct != correct:
        raise UnanswerableTasks({item.task: f"lm_eval_target: {item.id} grades otherwise"})
    until = fields.get("until") or []
    return reply + (f"\n\n{until[0]} next" if until and rng.random() < 0.5 else "")


FORMS: dict[str, Reply] = {
    "choice_letter": _choice_letter,
    "final_number": _final_number,
    "python_function": _python_function,
    "lm_eval_target": _lm_eval_target,
}
