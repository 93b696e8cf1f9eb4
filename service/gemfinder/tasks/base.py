"""Core types of the tasks package: items, prompts, generation settings, grades, the Task base."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One benchmark item of a query set: an id, the task it belongs to and the task's fields."""

    id: str
    task: str
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode for a task: always greedy; a token cap and stop sequences."""

    max_new_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prompt:
    """A prompt in both shapes: `text` for TGI /generate, `messages` for chat endpoints."""

    text: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Grade:
    """A 0/1 verdict and what the grader read from the response (None: nothing usable)."""

    correct: bool
    extracted: str | None


def strip_stop(response: str, stop: tuple[str, ...]) -> str:
    """Remove one trailing stop sequence: TGI keeps the matched stop at the end of the text."""
    for seq in sorted(stop, key=len, reverse=True):
        if seq and response.endswith(seq):
            return response[: -len(seq)]
    return response


class Task:
    """A benchmark task: builds prompts for items and grades responses to them.

    Subclasses set `name`, `generation`, `required_fields` and `instruction`, and implement
    `body(item)` (the question text) and `grade_clean(item, response)`.
    """

    name: str = ""
    generation: GenerationSettings = GenerationSettings(max_new_tokens=50)
    required_fields: tuple[str, ...] = ()
    # Task description; goes to the system turn when a system prompt is used, else it
    # prefixes the user turn, so both variants carry the same information.
    instruction: str = ""
    # Whether grading runs the response as code (seconds, in a sandbox): such graders run in a
    # worker thread; the others take microseconds and run inline.
    runs_code: bool = False
    # The form of a right answer, which the simulated fleet writes its replies in (one of
    # gemfinder.sim.fleet.responder.FORMS: "choice_letter", "final_number", "python_function"). A
    # task kind whose answers look like none of them adds its form there; a fleet refuses to
    # serve a task whose form it does not know, rather than answer it with made-up text.
    answer_form: str = ""
    # Part of every evaluation-cache key: bump it whenever grade_clean would give a different
    # 0/1 for some response, so grades cached under the old grader stop matching instead of
    # being served as if the new grader had given them (old rows are left, just never hit).
    grader_version: str = "1"

    def body(self, item: Item) -> str:
        raise NotImplementedError

    def grade_clean(self, item: Item, response: str) -> Grade:
        raise NotImplementedError

    def validate(self, item: Item) -> str | None:
        """Return a reason when the item's fields are unusable for this task, else None."""
        missing = [f for f in self.required_fields if f not in item.fields]
        if missing:
            return f"task {self.name} needs field(s) {', '.join(missing)}"
        return None

    def label(self, item: Item) -> str:
        """The task an item's results are reported under (per-task results, task weights):
        the task's name, unless items name their own benchmark (lm_eval)."""
        return self.name

    def grading_bounded(self, item: Item, response: str) -> bool:
        """Whether grading this answer is known to be quick, so it may run in the server's
        process: the graders written here use patterns probed linear
        (tests/tasks/test_grader_linear.py). False sends the answer to a grading process with a
        time limit (oracles.grading_pool): an lm_eval item whose patterns are not known linear.
        Blocking the first time for lm_eval (reads lm-eval's pattern set)."""
        return True

    def code_seconds(self, item: Item) -> float:
        """How long grading this item may run its program (added to the grading time limit)."""
        return 0.0

    def generation_for(self, item: Item) -> GenerationSettings:
        """Decoding settings for one item: the task's, unless items carry their own (lm_eval)."""
        return self.generation

    def loglikelihood_requests(self, item: Item) -> tuple[tuple[str, str], ...]:
        """The [context, continuation] pairs an item is scored from (one per choice, graded by
        `grade_loglikelihoods`), or () for an item graded from generated text."""
        return ()

    def grade_loglikelihoods(self, item: Item, lls: list[float]) -> Grade:
        raise ValueError(f"{item.id}: task {self.name} grades generated text")

    def build_prompt(self, item: Item, system_prompt: bool) -> Prompt:
        body = self.body(item)
        text = f"{self.instruction}\n\n{body}" if self.instruction else body
        if system_prompt and self.instruction:
            messages = [
                {"role": "system", "content": self.instruction},
                {"role": "user", "content": body},
            ]
        else:
            messages = [{"role": "user", "content": text}]
        return Prompt(text=text, messages=messages)

    def grade(self, item: Item, response: str) -> Grade:
        return self.grade_clean(item, strip_stop(response, self.generation.stop))
