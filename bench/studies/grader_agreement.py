"""Agreement of gemfinder's graders with RouterBench's own grades, per task and per model.

Usage: python -m bench.studies.grader_agreement [--data ../shared/data] [--mbpp-sample N] [--show K]
Multiple choice: gold letters inferred leave-one-out (see routerbench_rows.py). MBPP: each
response is run in the sandbox against the MBPP tests of the task with the same text.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gemfinder.tasks import Item, get_task  # noqa: E402
from gemfinder.tasks.multiple_choice import extract_letter  # noqa: E402

from bench.common.routerbench_rows import infer_gold, load_mbpp_reference, read_rows
from bench.common.shared_data import SHARED_DATA, require


def mc_agreement(data: Path, task: str) -> list[tuple]:
    """(model, ours, theirs, sample_id, response, gold) for every row with an inferable gold."""
    out = []
    for row in read_rows(data, task):
        letters = {m: extract_letter(r, row.choices) for m, r in row.responses.items()}
        for model, response in row.responses.items():
            gold = infer_gold(letters, row.grades, model, len(row.choices))
            if gold is None:
                continue
            item = Item(
                row.sample_id,
                task,
                {"question": row.question, "choices": row.choices, "answer": gold},
            )
            ours = get_task(task).grade(item, response).correct
            out.append((model, ours, row.grades[model], row.sample_id, response, gold))
    return out


def mbpp_agreement(data: Path, sample: int | None) -> list[tuple]:
    reference = load_mbpp_reference(data)
    jobs = []
    for row in read_rows(data, "mbpp"):
        rec = reference.get(" ".join(row.question.split()))
        if rec is None:
            continue
        item = Item(
            row.sample_id, "mbpp", {k: rec[k] for k in ("text", "test_list", "test_setup_code")}
        )
        for model, response in row.responses.items():
            jobs.append((model, item, response, row.grades[model]))
    if sample:
        jobs = jobs[:: max(1, len(jobs) // sample)][:sample]
    task = get_task("mbpp")

    def run(job):
        model, item, response, theirs = job
        return (model, task.grade(item, response).correct, theirs, item.id, response, None)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(run, jobs))


def report(task: str, results: list[tuple], show: int) -> None:
    by_model: dict[str, list[bool]] = defaultdict(list)
    for model, ours, theirs, *_ in results:
        by_model[model].append(ours == theirs)
    total = [x for v in by_model.values() for x in v]
    print(f"\n## {task}: {sum(total)}/{len(total)} = {sum(total) / max(1, len(total)):.2%}")
    for model in sorted(by_model):
        v = by_model[model]
        print(f"  {model:40s} {sum(v):5d}/{len(v):5d} = {sum(v) / len(v):.2%}")
    bad = [r for r in results if r[1] != r[2]]
    for model, ours, theirs, sid, response, gold in bad[:show]:
        print(f"  - {sid} {model} ours={ours} routerbench={theirs} gold={gold} {response[:160]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--mbpp-sample", type=int, default=None)
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--tasks", default="arc_challenge,winogrande,mbpp")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    require(args.data / "routerbench", option="--data DIR")
    if "mbpp" in tasks:
        require(args.data / "mbpp" / "mbpp.jsonl", option="--data DIR")
    for task in tasks:
        if task == "mbpp":
            results = mbpp_agreement(args.data, args.mbpp_sample)
        else:
            results = mc_agreement(args.data, task)
        report(task, results, args.show)


if __name__ == "__main__":
    main()
