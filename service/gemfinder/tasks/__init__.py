"""Benchmark tasks: query-set items, prompts, generation settings and graders.

Other parts of gemfinder use only the names exported here.
"""

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Prompt, Task, strip_stop
from gemfinder.tasks.query_set import load_query_set, parse_item
from gemfinder.tasks.registry import TASKS, get_task


def task_label(item: Item) -> str:
    """The task an item's results are reported under (Task.label)."""
    return get_task(item.task).label(item)


__all__ = [
    "TASKS",
    "GenerationSettings",
    "Grade",
    "Item",
    "Prompt",
    "Task",
    "get_task",
    "load_query_set",
    "parse_item",
    "strip_stop",
    "task_label",
]
