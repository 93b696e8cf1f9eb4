"""Support for the lm-eval parity tests: tiny local datasets in the Hugging Face layout, a
scripted lm-eval model, and lm-eval's own run of a task on them (the reference).

Data: GSM8K and MBPP rows are read in place from ../shared/data; shared/ has no HellaSwag, no
MMLU answers and no few-shot splits, so those documents are written here by hand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lm_eval
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _arc(i: int, q: str, opts: list[str], key: str, numeric: bool = False) -> dict[str, Any]:
    labels = ["1", "2", "3", "4"] if numeric else ["A", "B", "C", "D"]
    return {
        "id": f"arc-{i}",
        "question": q,
        "choices": {"text": opts, "label": labels[: len(opts)]},
        "answerKey": key,
    }


ARC_TEST = [
    _arc(
        0,
        "Which gas do plants take in to make food?",
        ["oxygen", "carbon dioxide", "helium", "neon"],
        "B",
    ),
    _arc(
        1,
        "What force pulls objects toward Earth?",
        ["magnetism", "friction", "gravity", "tension"],
        "C",
    ),
    _arc(2, "Which is a renewable resource?", ["coal", "wind", "oil", "natural gas"], "B"),
    _arc(
        3,
        "Water boils at sea level at which temperature?",
        ["50 C", "75 C", "100 C", "150 C"],
        "3",
        True,
    ),
    _arc(4, "What part of the cell holds DNA?", ["nucleus", "wall", "membrane"], "A"),
    _arc(5, "Which planet is closest to the Sun?", ["Venus", "Earth", "Mars", "Mercury"], "D"),
]
ARC_TRAIN = [
    _arc(10, "What do bees collect from flowers?", ["nectar", "sand", "bark", "salt"], "A"),
    _arc(11, "Which tool measures temperature?", ["ruler", "thermometer", "scale", "clock"], "B"),
    _arc(12, "Ice is water in which state?", ["gas", "liquid", "solid", "plasma"], "C"),
    _arc(13, "What makes a shadow?", ["blocked light", "sound", "heat", "wind"], "A"),
]


def _hs(i: int, label: str, ctx_a: str, ctx_b: str, endings: list[str], gold: int) -> dict:
    return {
        "ind": i,
        "activity_label": label,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": endings,
        "source_id": f"hand-{i}",
        "split": "val",
        "split_type": "indomain",
        "label": str(gold),
    }


HELLASWAG_VAL = [
    _hs(
        0,
        "Making tea",
        "A man fills a kettle with water.",
        "he",
        [
            "puts it on the stove.",
            "throws it into a lake.",
            "paints it blue [title] quickly.",
            "sings to it.",
        ],
        0,
    ),
    _hs(
        1,
        "Washing dishes",
        "A woman stands at a sink full of plates.",
        "she",
        [
            "rides a bicycle away.",
            "scrubs each plate with a sponge.",
            "reads a newspaper.",
            "plants a tree.",
        ],
        1,
    ),
    _hs(
        2,
        "Home and Garden: Watering plants",
        "A girl picks up a watering can.",
        "the girl",
        [
            "eats the can.",
            "flies to the moon.",
            "pours water over the flowers.",
            "writes a letter.",
        ],
        2,
    ),
    _hs(
        3,
        "Running",
        "A runner ties her shoes at the start line.",
        "she",
        [
            "falls asleep.",
            "bakes a cake.",
            "swims across.",
            "sprints down the track when the gun fires.",
        ],
        3,
    ),
    _hs(
        4,
        "Playing guitar",
        "A boy sits down with a guitar.",
        "he",
        [
            "strums a few chords.",
            "cooks soup in it.",
            "mails it to a friend.",
            "uses it as an umbrella.",
        ],
        0,
    ),
]
HELLASWAG_TRAIN = [
    _hs(
        10,
        "Brushing teeth",
        "A child holds a toothbrush.",
        "the child",
        ["brushes his teeth.", "climbs a wall.", "drives a car.", "sells a house."],
        0,
    ),
    _hs(
        11,
        "Baking",
        "A baker kneads dough.",
        "the baker",
        ["shapes it into loaves.", "sings opera.", "calls a taxi.", "paints the walls."],
        0,
    ),
    _hs(
        12,
        "Sports: Tennis",
        "A player tosses the ball up.",
        "she",
        ["eats it.", "serves it over the net.", "buries it.", "mails it."],
        1,
    ),
]

MMLU_TEST = [
    {
        "question": "Find the order of the group Z_4 x Z_2.",
        "subject": "abstract_algebra",
        "choices": ["2", "4", "8", "16"],
        "answer": 2,
    },
    {
        "question": "Is every cyclic group abelian?",
        "subject": "abstract_algebra",
        "choices": ["Yes", "No", "Only finite ones", "Only infinite ones"],
        "answer": 0,
    },
    {
        "question": "The identity element of a group is",
        "subject": "abstract_algebra",
        "choices": ["not unique", "unique", "zero", "undefined"],
        "answer": 1,
    },
    {
        "question": "How many elements of order 2 does Z_6 have?",
        "subject": "abstract_algebra",
        "choices": ["0", "1", "2", "3"],
        "answer": 1,
    },
]
MMLU_DEV = [
    {
        "question": f"Dev question {i}: what is {i} + {i}?",
        "subject": "abstract_algebra",
        "choices": [str(i), str(2 * i), str(3 * i), str(4 * i)],
        "answer": 1,
    }
    for i in range(1, 6)
]

WINOGRANDE_VAL = [
    {
        "sentence": "The trophy did not fit in the suitcase because the _ was too big.",
        "option1": "trophy",
        "option2": "suitcase",
        "answer": "1",
    },
    {
        "sentence": "Sarah lent Maria money because _ was short on cash.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "2",
    },
    {
        "sentence": "The cat chased the mouse until the _ hid in a hole.",
        "option1": "cat",
        "option2": "mouse",
        "answer": "2",
    },
    {
        "sentence": "John thanked Tom because _ had helped him move.",
        "option1": "John",
        "option2": "Tom",
        "answer": "2",
    },
    {
        "sentence": "The glass broke on the tile because the _ was fragile.",
        "option1": "glass",
        "option2": "tile",
        "answer": "1",
    },
]
WINOGRANDE_TRAIN = [
    {
        "sentence": "Anna gave Beth a gift because _ was having a birthday.",
        "option1": "Anna",
        "option2": "Beth",
        "answer": "2",
    },
    {
        "sentence": "The ball broke the window because the _ was moving fast.",
        "option1": "ball",
        "option2": "window",
        "answer": "1",
    },
    {
        "sentence": "Mark called Luke since _ wanted to chat.",
        "option1": "Mark",
        "option2": "Luke",
        "answer": "1",
    },
]


def shared_rows(path: Path, start: int, count: int) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[start : start + count]]


def scripted_ll(context: str, continuation: str) -> float:
    """A fixed log-likelihood for a (context, continuation) pair, the same on both sides."""
    digest = hashlib.sha256(f"{context}\x00{continuation}".encode()).digest()
    return -20.0 * int.from_bytes(digest[:8], "big") / 2**64


@register_model("gemfinder-scripted")
class ScriptedLM(LM):
    """Answers from a script: `generations` maps the exact prompt to the raw text a server
    would return (stop string included); log-likelihoods come from `scripted_ll`, plus
    `bonus[(context, continuation)]` for the pairs the script favours. A prompt the script does
    not know is a failure: lm-eval built a different prompt."""

    def __init__(
        self,
        generations: dict[str, str] | None = None,
        bonus: dict[tuple[str, str], float] | None = None,
    ) -> None:
        super().__init__()
        self.generations = generations or {}
        self.bonus = bonus or {}
        self.prompts: list[str] = []

    def generate_until(self, requests: list[Any]) -> list[str]:
        out = []
        for req in requests:
            ctx, kwargs = req.args
            self.prompts.append(ctx)
            text = self.generations[ctx]
            until = kwargs.get("until") or []
            for term in [until] if isinstance(until, str) else until:
                if term:  # what lm-eval's HF model does with the decoded text
                    text = text.split(term)[0]
            out.append(text)
        return out

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            ctx, cont = req.args
            self.prompts.append(ctx)
            out.append((scripted_ll(ctx, cont) + self.bonus.get((ctx, cont), 0.0), False))
        return out

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        raise NotImplementedError


def reference_yaml(tmp: Path, task: str, yaml_rel: str, files: dict[str, Path]) -> Path:
    """lm-eval's documented way to point a task at local data: a YAML that `include`s the
    shipped one and sets dataset_path / dataset_kwargs (independent of gemfinder's patching)."""
    data_files = {split: str(p) for split, p in files.items()}
    cfg = {
        "include": str(LM_EVAL_TASKS / yaml_rel),
        "task": task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }
    path = tmp / f"ref_{task}.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


def run_lm_eval(
    yaml_path: Path, model: ScriptedLM, num_fewshot: int | None, limit: int, seed: int
) -> list[dict[str, Any]]:
    """lm-eval's own evaluation of the task: its per-document samples (all filters)."""
    from gemfinder.tasks.lmeval.codeeval import guarded_evaluate_load
    from gemfinder.tasks.lmeval.loading import task_manager

    with guarded_evaluate_load():  # mbpp's utils must never reach evaluate.load for real
        results = lm_eval.simple_evaluate(
            model=model,
            tasks=[str(yaml_path)],
            task_manager=task_manager(),
            num_fewshot=num_fewshot,
            limit=limit,
            log_samples=True,
            fewshot_random_seed=seed,
            bootstrap_iters=0,
            confirm_run_unsafe_code=True,
        )
    assert results is not None
    (samples,) = results["samples"].values()
    return samples
