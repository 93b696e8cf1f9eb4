"""The `lm_eval` task kind: query-set records built by `gemfinder queryset build --lm-eval-task`.

Unlike the built-in tasks, each record carries its own prompt (lm-eval's exact text, few-shot
included), stop strings, token cap and grading recipe, so one Task instance serves every lm-eval
task. Importing this module does not import lm_eval (an optional extra); grading does.
"""

from __future__ import annotations

import importlib.metadata

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Prompt, Task
from gemfinder.tasks.lmeval import TASK_KIND

# The 0/1 metrics by output type (as in build.ZERO_ONE, without importing lm_eval).
ZERO_ONE = {
    "generate_until": ("exact_match", "pass_at_1"),
    "multiple_choice": ("acc", "acc_norm", "acc_bytes"),
}

# lm-eval's filters that are data, not code, by registry name (lm_eval.filters). `custom`
# calls a Python function: a task's YAML may name one (the build refuses it), an item never.
DATA_FILTERS = frozenset(
    ("format_span", "lowercase", "majority_vote", "map", "multi_choice_regex", "regex",
     "regex_pos", "remove_whitespace", "take_first", "take_first_k", "uppercase")
)  # fmt: skip

_COMMON = ("lm_eval", "output_type", "doc", "metric")
_BY_TYPE = {
    "generate_until": ("prompt", "until", "max_gen_toks", "target", "filter"),
    "multiple_choice": ("requests", "choices", "gold"),
}


def _lm_eval_version() -> str:
    """lm_eval's installed version, read from its metadata (importing lm_eval takes seconds)."""
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


class LmEvalTask(Task):
    name = TASK_KIND
    # For callers that still ask the task, not the item (`generation` rather than
    # `generation_for(item)`): lm-eval's default token cap and no stop strings. Grading cuts
    # the text at the item's own `until`, so the grade is the same; only the generation is longer.
    generation = GenerationSettings(max_new_tokens=256)
    # The simulated fleet answers generate_until items scored by exact_match with the gold
    # target (sim/fleet/responder.py); multiple_choice items with log-likelihoods whose argmax is
    # the matrix answer (sim/fleet/loglik.py, asked per choice, never through the responder).
    answer_form = "lm_eval_target"

    @property
    def grader_version(self) -> str:  # type: ignore[override]
        # Grading calls lm_eval's own filters and metrics, so their version is the grader's.
        return f"1+lm_eval-{_lm_eval_version()}"

    @property
    def runs_code(self) -> bool:  # type: ignore[override]
        # The oracle asks this per task; an lm_eval set may hold code items (mbpp), so grading
        # always goes to a worker thread (cheap next to a model call).
        return True

    def grading_bounded(self, item: Item, response: str) -> bool:
        if item.fields.get("output_type") != "generate_until":
            return True  # log-likelihood arithmetic
        from gemfinder.tasks.lmeval.patterns import quick_to_grade

        return quick_to_grade(item.fields, len(response))

    def code_seconds(self, item: Item) -> float:
        if item.fields.get("metric", {}).get("name") != "pass_at_1":
            return 0.0
        from gemfinder.tasks.lmeval.codeeval import CODE_EVAL_TIMEOUT_S

        return CODE_EVAL_TIMEOUT_S + 5.0  # the program's limit, and starting its sandbox

    def validate(self, item: Item) -> str | None:
        f = item.fields
        kind = f.get("output_type")
        if kind not in _BY_TYPE:
            return "output_type must be generate_until or multiple_choice"
        missing = [k for k in _COMMON + _BY_TYPE[kind] if k not in f]
        if missing:
            return f"task lm_eval needs field(s) {', '.join(missing)}"
        if not isinstance(f["doc"], dict):
            return "doc must be an object (the lm-eval document)"
        metric = f["metric"]
        if not isinstance(metric, dict) or metric.get("name") not in ZERO_ONE[kind]:
            return f"metric must be an object whose name is one of {', '.join(ZERO_ONE[kind])}"
        if not isinstance(metric.get("kwargs", {}), dict):
            return "metric.kwargs must be an object"
        if kind == "generate_until":
            if not isinstance(f["prompt"], str):
                return "prompt must be a string"
            if not (isinstance(f["until"], list) and all(isinstance(s, str) for s in f["until"])):
                return "until must be a list of strings"
            if not isinstance(f["max_gen_toks"], int) or f["max_gen_toks"] < 1:
                return "max_gen_toks must be a positive integer"
            flt = f["filter"]
            if not (
                isinstance(flt, dict)
                and isinstance(flt.get("name"), str)
                and isinstance(flt.get("steps"), list)
                and flt["steps"]
                and all(
                    isinstance(st, list)
                    and len(st) == 2
                    and isinstance(st[0], str)
                    and isinstance(st[1], dict | None)
                    for st in flt["steps"]
                )
            ):
                return "filter must be {name, steps: [[function, kwargs or null], ...]}"
            chat = f.get("chat_messages")
            if chat is not None and not (
                isinstance(chat, list)
                and chat
                and all(
                    isinstance(m, dict)
                    and set(m) == {"role", "content"}
                    and m["role"] in ("system", "user", "assistant")
                    and isinstance(m["content"], str)
                    for m in chat
                )
            ):
                return "chat_messages must be a non-empty list of {role, content} messages"
            unknown = sorted({st[0] for st in flt["steps"]} - DATA_FILTERS)
            if unknown:
                return (
                    f"filter steps {unknown} are not lm-eval filters gemfinder runs "
                    f"({', '.join(sorted(DATA_FILTERS))}; Python code is never taken from an item)"
                )
        else:
            reqs = f["requests"]
            if not (
                isinstance(reqs, list)
                and reqs
                and all(isinstance(r, list) and len(r) == 2 for r in reqs)
                and all(isinstance(s, str) for r in reqs for s in r)
            ):
                return "requests must be a non-empty list of [context, continuation] strings"
            if not isinstance(f["choices"], list) or len(f["choices"]) != len(reqs):
                return "choices must list one string per request"
        return None

    def label(self, item: Item) -> str:
        """The lm-eval task the record was built from (`gsm8k`, `arc_challenge`), so a query set
        mixing lm-eval tasks reports each apart; a built-in task of the same name in the same
        query set is reported together with it."""
        source = item.fields.get("lm_eval")
        task = source.get("task") if isinstance(source, dict) else None
        return task if isinstance(task, str) and task else self.name

    def generation_for(self, item: Item) -> GenerationSettings:
        f = item.fields
        return GenerationSettings(
            max_new_tokens=int(f.get("max_gen_toks", 256)), stop=tuple(f.get("until", ()))
        )

    def loglikelihood_requests(self, item: Item) -> tuple[tuple[str, str], ...]:
        f = item.fields
        if f.get("output_type") != "multiple_choice":
            return ()
        return tuple((ctx, cont) for ctx, cont in f["requests"])

    def build_prompt(self, item: Item, system_prompt: bool) -> Prompt:
        """lm-eval's prompt as text (TGI, completions) and, for chat, the messages lm-eval
        sends with its chat template applied (few-shot turns included). `system_prompt` has no
        effect: lm-eval sends a system turn only for a task `description` or instruction, which
        the messages already hold. Records built before chat_messages existed send the text
        as one user turn."""
        f = item.fields
        text = f["prompt"] if f["output_type"] == "generate_until" else f["requests"][0][0]
        messages = f.get("chat_messages") or [{"role": "user", "content": text}]
        return Prompt(text=text, messages=[dict(m) for m in messages])

    def grade(self, item: Item, response: str) -> Grade:
        from gemfinder.tasks.lmeval.grading import grade_generation

        if item.fields["output_type"] != "generate_until":
            raise ValueError(
                f"{item.id} is a multiple_choice item: it is graded from log-likelihoods "
                "(grade_loglikelihoods), not from generated text"
            )
        score, extracted = grade_generation(item.fields, response)
        return Grade(correct=score == 1.0, extracted=None if extracted is None else str(extracted))

    def grade_loglikelihoods(self, item: Item, lls: list[float]) -> Grade:
        from gemfinder.tasks.lmeval.grading import score_loglikelihoods

        score, pred = score_loglikelihoods(item.fields, lls)
        return Grade(correct=score == 1.0, extracted=str(pred))
