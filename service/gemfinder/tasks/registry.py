"""The task registry: task name -> Task instance."""

from __future__ import annotations

from gemfinder.errors import UserError
from gemfinder.tasks.base import Task
from gemfinder.tasks.gsm8k import Gsm8k
from gemfinder.tasks.lmeval.task import LmEvalTask
from gemfinder.tasks.mbpp import Mbpp
from gemfinder.tasks.multiple_choice import ArcChallenge, Mmlu, Winogrande

TASKS: dict[str, Task] = {
    t.name: t for t in (ArcChallenge(), Mmlu(), Winogrande(), Gsm8k(), Mbpp(), LmEvalTask())
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise UserError("task", f"unknown task {name!r} (known: {known})") from None
