"""GSM8K: zero-shot "Question/Answer" prompt, numeric answer extraction and comparison."""

from __future__ import annotations

import math
import re

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Task

# lm-evaluation-harness gsm8k filters: "strict-match" and "flexible-extract".
_STRICT = re.compile(r"#### (-?[0-9.,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def normalize_number(raw: str) -> str | None:
    """'$1,234.50.' -> '1234.50'; None when no finite number is left (float() also reads
    'NaN', 'inf' and '1e999', which no answer means)."""
    s = raw.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(s)
    except ValueError:
        return None
    return s if math.isfinite(value) else None


def extract_number(response: str) -> str | None:
    """The final answer of a GSM8K response: `#### N` if present, else the last number."""
    m = _STRICT.search(response)
    if m:
        value = normalize_number(m.group(1))
        if value is not None:
            return value
    for m in reversed(list(_FLEXIBLE.finditer(response))):
        value = normalize_number(m.group(1) or m.group(2))
        if value is not None:
            return value
    return None


def reference_number(answer: str) -> str | None:
    """The gold number of a reference solution ending `#### N`, or of a plain number."""
    text = str(answer)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return normalize_number(text)


def same_number(a: str, b: str) -> bool:
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


class Gsm8k(Task):
    name = "gsm8k"
    generation = GenerationSettings(
        max_new_tokens=512, stop=("\n\nQuestion:", "Question:", "</s>", "<|im_end|>")
    )
    answer_form = "final_number"
    required_fields = ("question", "answer")
    instruction = (
        "Solve the math word problem step by step. "
        "End with the final answer on its own line as '#### <number>'."
    )

    def validate(self, item: Item) -> str | None:
        reason = super().validate(item)
        if reason is None and reference_number(item.fields["answer"]) is None:
            reason = "answer must end with '#### <number>' or be a number, finite"
        return reason

    def body(self, item: Item) -> str:
        return f"Question: {str(item.fields['question']).strip()}\nAnswer:"

    def grade_clean(self, item: Item, response: str) -> Grade:
        got = extract_number(response)
        gold = reference_number(item.fields["answer"])
        return Grade(
            correct=got is not None and gold is not None and same_number(got, gold), extracted=got
        )
