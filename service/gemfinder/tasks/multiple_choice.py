"""Multiple-choice tasks (ARC-Challenge, MMLU, Winogrande): lettered prompts, letter extraction."""

from __future__ import annotations

import re

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Task

LETTERS = "ABCDE"

# Ordered from most to least explicit; the first rule that yields a valid letter wins.
# Keywords match in any case; the letter itself must be upper case ("option is a good one").
# Possessive (`*+`): no token after a whitespace run can start with whitespace, so giving some
# back never makes a match, and without it "answer" and 1,000 spaces took 22 s (each run split
# every way among the three `\s*`; tests/tasks/test_grader_linear.py).
_EXPLICIT = re.compile(
    r"(?i:answer|option|choice)\s*+(?i:is|would be|should be|:)?\s*+[:\-]?\s*+"
    r"(?i:option\s++|choice\s++|letter\s++)?[\"'*(\[]*+([A-E])\b(?![\w'])"
)
_ONLY_LETTER_LINE = re.compile(r"^[\s\"'*(\[]*([A-E])[\s\"'*)\].:]*$")
# "C.", "(C)", "[C]", "C)", "C - ...", and "D (" (a reply cut off before the option text).
_LEADING_LETTER = re.compile(
    r"^[\s\"'*]*(?:\(([A-E])\)|\[([A-E])\]|([A-E])(?:[).:]|\s*$|\s+-|\s+\())"
)
_PAREN_LETTER = re.compile(r"\(([A-E])\)")


def _norm_text(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def extract_letter(response: str, choices: list[str]) -> str | None:
    """The letter a response picks among `len(choices)` options, or None if it picks none."""
    valid = LETTERS[: len(choices)]
    text = response.strip()
    if not text:
        return None

    def ok(letter: str | None) -> str | None:
        return letter if letter and letter in valid else None

    for m in _EXPLICIT.finditer(text):
        if ok(m.group(1)):
            return m.group(1)
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    m = _ONLY_LETTER_LINE.match(first_line)
    if m and ok(m.group(1)):
        return m.group(1)
    m = _LEADING_LETTER.match(text)
    if m:
        letter = ok(next(g for g in m.groups() if g))
        if letter:
            return letter
    # The answer written out as a choice's text ("Dennis", "wet palms").
    norm = _norm_text(text)
    exact = [i for i, c in enumerate(choices) if _norm_text(str(c)) == norm]
    if len(exact) == 1:
        return valid[exact[0]]
    found = {m.group(1) for m in _PAREN_LETTER.finditer(text) if m.group(1) in valid}
    if len(found) == 1:
        return found.pop()
    first_norm = _norm_text(first_line)
    contained = [
        i
        for i, c in enumerate(choices)
        if _norm_text(str(c)) and re.search(rf"\b{re.escape(_norm_text(str(c)))}\b", first_norm)
    ]
    if len(contained) == 1:
        return valid[contained[0]]
    return None


class MultipleChoiceTask(Task):
    """Lettered options; `answer` is one of `labels` (letters or 1-5), default A, B, C, ..."""

    generation = GenerationSettings(max_new_tokens=50, stop=("\nQuestion:", "\n\n\n"))
    answer_form = "choice_letter"
    required_fields = ("question", "choices", "answer")
    instruction = (
        "The following is a multiple choice question. Answer with the letter of the correct choice."
    )

    def validate(self, item: Item) -> str | None:
        reason = super().validate(item)
        if reason:
            return reason
        choices = item.fields["choices"]
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            return f"choices must be a list of 2 to {len(LETTERS)} options"
        labels = item.fields.get("labels") or list(LETTERS[: len(choices)])
        if not isinstance(labels, list) or len(labels) != len(choices):
            return "labels must be a list as long as choices"
        if str(item.fields["answer"]) not in [str(x) for x in labels]:
            return f"answer {item.fields['answer']!r} is not one of the labels {labels}"
        return None

    def gold_letter(self, item: Item) -> str:
        choices = item.fields["choices"]
        labels = [str(x) for x in (item.fields.get("labels") or LETTERS[: len(choices)])]
        return LETTERS[labels.index(str(item.fields["answer"]))]

    def question(self, item: Item) -> str:
        return str(item.fields["question"]).strip()

    def body(self, item: Item) -> str:
        options = "\n".join(
            f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(item.fields["choices"])
        )
        return f"Question: {self.question(item)}\n{options}\nAnswer:"

    def grade_clean(self, item: Item, response: str) -> Grade:
        letter = extract_letter(response, list(item.fields["choices"]))
        return Grade(correct=letter == self.gold_letter(item), extracted=letter)


class ArcChallenge(MultipleChoiceTask):
    name = "arc_challenge"


class Mmlu(MultipleChoiceTask):
    name = "mmlu"


class Winogrande(MultipleChoiceTask):
    name = "winogrande"
    instruction = (
        "Choose the option that correctly fills the blank (_) in the sentence. "
        "Answer with the letter of the correct choice."
    )

    def question(self, item: Item) -> str:
        return f"Which option fills the blank? {str(item.fields['question']).strip()}"
