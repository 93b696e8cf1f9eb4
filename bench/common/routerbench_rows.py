"""Read RouterBench rows (../shared/data/routerbench/*_train.csv) into items for grader checks.

The CSVs carry the prompt, 11 models' responses and RouterBench's 0/1 grade per model, but no
answer key. For multiple choice the gold letter is inferred leave-one-out: for the model being
checked, only the *other* models' grades and extracted letters are used, so a grader cannot
agree with RouterBench merely by construction.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

csv.field_size_limit(1 << 30)

FILES = {
    "arc_challenge": "arc_challenge_train.csv",
    "winogrande": "winograde_train.csv",
    "mbpp": "mbpp_train.csv",
}
_OPTION = re.compile(r"^([A-E])\) ?(.*)$")


@dataclass
class Row:
    sample_id: str
    question: str
    choices: list[str]
    responses: dict[str, str]  # model -> response
    grades: dict[str, bool]  # model -> RouterBench grade


def models_of(header: list[str]) -> list[str]:
    return [h.split("|")[0] for h in header if h.endswith("|model_response")]


def read_rows(data_dir: Path, task: str) -> list[Row]:
    rows = []
    with open(data_dir / "routerbench" / FILES[task], newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        models = models_of(reader.fieldnames or [])
        for rec in reader:
            prompt = ast.literal_eval(rec["prompt"])[0]
            question, choices = prompt, []
            if task != "mbpp":
                # Few-shot prompt: the last block (after the last blank line) is the question.
                block = prompt.rsplit("\n\n", 1)[-1].splitlines()
                choices = [m.group(2) for line in block if (m := _OPTION.match(line))]
                question = "\n".join(line for line in block if not _OPTION.match(line))
            # A few cells are empty (no grade or no response): those pairs are left out.
            graded = [m for m in models if rec[m] and rec[f"{m}|model_response"]]
            rows.append(
                Row(
                    sample_id=rec["sample_id"],
                    question=question,
                    choices=choices,
                    responses={m: ast.literal_eval(rec[f"{m}|model_response"])[0] for m in graded},
                    grades={m: float(rec[m]) >= 0.5 for m in graded},
                )
            )
    return rows


def infer_gold(
    letters: dict[str, str | None], grades: dict[str, bool], skip: str, n_choices: int
) -> str | None:
    """Gold letter from the other models: what the graded-correct ones said, else elimination."""
    right = Counter(
        letters[m] for m in letters if m != skip and grades[m] and letters[m] is not None
    )
    if right:
        letter, n = right.most_common(1)[0]
        return letter if n > sum(right.values()) / 2 else None
    wrong = {letters[m] for m in letters if m != skip and not grades[m]}
    left = [c for c in "ABCDE"[:n_choices] if c not in wrong]
    return left[0] if len(left) == 1 else None


def load_mbpp_reference(data_dir: Path) -> dict[str, dict]:
    """MBPP tasks by their normalised text, to find the tests for a RouterBench prompt."""
    out = {}
    for line in (data_dir / "mbpp" / "mbpp.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[" ".join(rec["text"].split())] = rec
    return out
