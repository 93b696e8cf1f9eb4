"""Benchmark tasks: query-set items, prompts, generation settings and graders.

Other parts of gemfinder use only the names exported here.
"""

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Prompt, Task, strip_stop
from gemfinder.tasks.query_set import load_query_set, parse_item
from gemfinder.tasks.registry import TASKS, get_task

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
]
