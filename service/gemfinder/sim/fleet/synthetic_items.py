"""Synthetic benchmark-like items (the project ships no benchmark text copied from elsewhere).

Seeded generators per task: GSM8K-like word problems with computed answers, ARC/MMLU-like
four-option questions from small fact tables, Winogrande-like two-option sentences, and
MBPP-like function tasks with reference code and asserts whose expected values are computed by
running that (trusted, project-written) reference code. Ids look like `gsm8k/17`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gemfinder.sim.fleet import synthetic_mc as mc
from gemfinder.sim.fleet.synthetic_code import mbpp_item

NAMES = ["Maya", "Liam", "Priya", "Jonas", "Aiko", "Tomas", "Zara", "Omar", "Elena", "Kofi"]
THINGS = ["pencils", "apples", "stickers", "marbles", "notebooks", "cupcakes", "stamps"]


def _gsm8k(rng: random.Random) -> dict[str, Any]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.randrange(6)
    if kind == 0:
        a, p, q = rng.randint(3, 15), rng.randint(2, 9), rng.randint(5, 40)
        x = a * p
        question = (
            f"{name} buys {a} {thing} at ${p} each and a backpack for ${q}. "
            f"How much money does {name} spend in total?"
        )
        steps = [
            f"The {thing} cost {a} * {p} = ${x}.",
            f"In total {name} spends {x} + {q} = ${x + q}.",
        ]
        answer = x + q
    elif kind == 1:
        s, h, s2, h2 = (
            rng.randint(20, 70),
            rng.randint(2, 6),
            rng.randint(10, 50),
            rng.randint(1, 4),
        )
        question = (
            f"A bus travels at {s} miles per hour for {h} hours, then at {s2} miles per hour for "
            f"{h2} hours. How many miles does it travel in total?"
        )
        steps = [
            f"First part: {s} * {h} = {s * h} miles.",
            f"Second part: {s2} * {h2} = {s2 * h2} miles.",
            f"Total: {s * h} + {s2 * h2} = {s * h + s2 * h2} miles.",
        ]
        answer = s * h + s2 * h2
    elif kind == 2:
        f, k = rng.randint(2, 7), rng.randint(2, 9)
        n = f * k + rng.randint(1, 30)
        question = (
            f"{name} has {n} {thing}. {name} gives {k} {thing} to each of {f} friends and keeps "
            f"the rest. How many {thing} does {name} keep?"
        )
        steps = [
            f"{name} gives away {f} * {k} = {f * k} {thing}.",
            f"{name} keeps {n} - {f * k} = {n - f * k}.",
        ]
        answer = n - f * k
    elif kind == 3:
        p, pct = rng.randint(2, 30) * 20, rng.choice([10, 20, 25, 50])
        off = p * pct // 100
        question = (
            f"A store sells a jacket for ${p}. During a sale the price is reduced by {pct}%. "
            f"How many dollars does the jacket cost during the sale?"
        )
        steps = [
            f"The discount is {p} * {pct} / 100 = ${off}.",
            f"The sale price is {p} - {off} = ${p - off}.",
        ]
        answer = p - off
    elif kind == 4:
        a, b, w = rng.randint(5, 30), rng.randint(10, 60), rng.randint(2, 8)
        week = 5 * a + 2 * b
        question = (
            f"{name} reads {a} pages on each weekday and {b} pages on each weekend day. "
            f"How many pages does {name} read in {w} weeks?"
        )
        steps = [
            f"In one week: 5 * {a} + 2 * {b} = {week} pages.",
            f"In {w} weeks: {week} * {w} = {week * w} pages.",
        ]
        answer = week * w
    else:
        a, d, y = rng.randint(5, 40), rng.randint(1, 12), rng.randint(2, 15)
        question = (
            f"{name} is {a} years old and {name}'s cousin is {d} years older. In {y} years, "
            f"what will be the sum of their ages?"
        )
        steps = [
            f"The cousin is {a} + {d} = {a + d} years old.",
            f"In {y} years: ({a} + {y}) + ({a + d} + {y}) = {2 * a + d + 2 * y}.",
        ]
        answer = 2 * a + d + 2 * y
    return {"question": question, "answer": "\n".join(steps) + f"\n#### {answer}"}


# The tasks with a synthetic generator (a task without one has no synthetic items; the fleet
# still serves its items from a query set, given a matrix column for each).
MAKERS = {
    "arc_challenge": mc.arc_item,
    "mmlu": mc.mmlu_item,
    "winogrande": mc.winogrande_item,
    "gsm8k": _gsm8k,
    "mbpp": mbpp_item,
}
TASKS = tuple(MAKERS)


def generate(per_task: int, seed: int = 0, tasks: Iterable[str] = TASKS) -> list[dict[str, Any]]:
    """`per_task` items for each task, as query-set records (`id`, `task`, fields)."""
    records = []
    for task in tasks:
        if task not in MAKERS:
            raise ValueError(f"no synthetic generator for task {task!r}")
        rng = random.Random(f"{seed}|{task}")
        seen: set[str] = set()
        for i in range(per_task):
            # Distinct prompts only: the fleet tells items apart by their prompt text.
            for _ in range(1000):
                fields = MAKERS[task](rng)
                key = json.dumps(
                    [fields.get(k) for k in ("question", "choices", "text", "test_list")]
                )
                if key not in seen:
                    break
            else:
                raise ValueError(f"cannot make {per_task} distinct {task} items")
            seen.add(key)
            records.append({"id": f"{task}/{i}", "task": task, **fields})
    return records


def for_items(
    ids: Iterable[str], seed: int = 0, tasks: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Records for exactly these ids (`task/index`, as `gemfinder trees generate` names a
    matrix's columns), the same text `generate` gives them, by task then index; `tasks` keeps
    only those tasks. Ids no generator can make raise ValueError naming them."""
    keep = None if tasks is None else set(tasks)
    wanted: dict[str, set[int]] = {}
    unknown = []
    for item_id in ids:
        task, _, index = item_id.partition("/")
        if task not in TASKS or not index.isdigit() or str(int(index)) != index:
            unknown.append(item_id)
        elif keep is None or task in keep:
            wanted.setdefault(task, set()).add(int(index))
    if unknown:
        more = f", ... ({len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ValueError(
            f"{len(unknown)} items have no synthetic generator ({', '.join(unknown[:5])}{more}); "
            f"ids must be task/index with task one of {', '.join(TASKS)}"
        )
    records = []
    for task in sorted(wanted):
        indices = wanted[task]
        # Each task's items come from its own seeded stream, so a prefix is the same items.
        made = generate(max(indices) + 1, seed=seed, tasks=[task])
        records += [r for i, r in enumerate(made) if i in indices]
    return records


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
