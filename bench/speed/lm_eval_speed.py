"""Items built and graded per second for a 5-shot lm-eval task (gsm8k, from ../shared/data).

Building runs lm-eval's own prompt construction (`build_all_requests`, 5 few-shot examples per
item) and writes gemfinder records; grading runs the task's filter pipeline and exact_match
metric (lm-eval's functions) on scripted responses through gemfinder's `lm_eval` task kind.
The one-time costs (lm-eval's task index, walked and read from gemfinder's disk cache, loading the
task) are reported apart; then the same responses graded as a search grades them (worker
thread, the oracle's path, the grading processes). Compare the rates with the oracle's graded
queries per second (docs/oracles.md, "Throughput"). Last, answers to a gpqa-style item whose
filter is `multi_choice_regex`: lm-eval's own filter (its Unicode table rebuilt per answer)
against gemfinder's (the table built once per process: tasks/lmeval/mcregex.py), in-process
and in the grading processes, where such items are graded.

    python -m bench.speed.lm_eval_speed [--items 1000] [--grade-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from gemfinder.tasks import get_task, parse_item
from gemfinder.tasks.lmeval import index
from gemfinder.tasks.lmeval.build import records_from_task
from gemfinder.tasks.lmeval.loading import load_task, task_manager

from bench.common.shared_data import SHARED_DATA, require

IN_FLIGHT = 32  # answers graded at once, as pulls in flight come back


def _responses(rec: dict) -> list[str]:
    gold = rec["doc"]["answer"].split("####")[-1].strip()
    return [
        f"Let me think step by step.\n#### {gold}\n\nQuestion: next",
        f"The answer is {gold}.",
        "#### 7",
        "I do not know.",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000, help="gsm8k documents to build (max 1000)")
    ap.add_argument("--grade-rounds", type=int, default=3, help="responses graded per item / 4")
    args = ap.parse_args()
    src = SHARED_DATA / "gsm8k" / "test.jsonl"
    require(src)
    lines = src.read_text(encoding="utf-8").splitlines()
    n = min(args.items, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        test, train = Path(tmp, "test.jsonl"), Path(tmp, "train.jsonl")
        test.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
        train.write_text("\n".join(lines[1000:]) + "\n", encoding="utf-8")  # the few-shot pool

        t0 = time.perf_counter()
        task_manager()  # lm-eval's own walk over its YAML files
        t_index = time.perf_counter() - t0
        index.task_index()  # writes the disk cache when it is missing
        index._memo.clear()
        t0 = time.perf_counter()
        index.task_index()  # what a later process pays: the cached index
        t_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        task = load_task("gsm8k", {"test": test, "train": train}, num_fewshot=5, seed=1234)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        records = records_from_task(task, limit=None, seed=1234, metric=None, filter_name=None)
        lines_out = [json.dumps(r) for r in records]
        t_build = time.perf_counter() - t0

    items = [parse_item(line, f"item {i}") for i, line in enumerate(lines_out)]
    grader = get_task("lm_eval")
    work = [(it, r) for it, rec in zip(items, records, strict=True) for r in _responses(rec)]
    work *= args.grade_rounds
    t0 = time.perf_counter()
    correct = sum(grader.grade(it, r).correct for it, r in work)
    t_grade = time.perf_counter() - t0

    prompt_chars = sum(len(r["prompt"]) for r in records) / len(records)
    print(
        f"lm-eval task index: walked {t_index:.1f} s (once per process without the cache), "
        f"read from the disk cache {t_cached:.2f} s"
    )
    print(f"load gsm8k (local files, once per build): {t_load:.2f} s")
    print(
        f"built {len(records)} items, 5-shot (mean prompt {prompt_chars:.0f} chars; plain "
        "prompt and chat messages, two passes of lm-eval's build): "
        f"{t_build:.2f} s = {len(records) / t_build:,.0f} items/s"
    )
    print(
        f"graded {len(work)} responses (strict-match + exact_match; {correct} correct): "
        f"{t_grade:.2f} s = {len(work) / t_grade:,.0f} graded/s"
    )
    for label, rate in asyncio.run(_oracle_paths(work[: len(work) // args.grade_rounds])):
        print(f"{label}: {rate:,.0f} graded/s")
    print("oracle (docs/oracles.md): ~300 graded queries/s multiple choice, 13-20/s MBPP")
    for label, rate in _mcregex_rates():
        print(f"multi_choice_regex, {label}: {rate:,.0f} graded/s")


async def _oracle_paths(work: list) -> list[tuple[str, float]]:
    """Graded per second the way a search grades (IN_FLIGHT answers at once): a worker thread
    per answer (the path before the grading time limit), the oracle's path now (the same hop,
    deciding there whether the item's patterns are known linear: gsm8k's are), and the grading
    processes, where an item whose patterns are not known linear goes (oracles.grading_pool)."""
    from gemfinder.backends.base import Completion
    from gemfinder.oracles import InferenceOracle

    grader = get_task("lm_eval")
    oracle = InferenceOracle()
    answers = [(it, Completion(r, None, None)) for it, r in work]

    async def rate(grade) -> float:
        await asyncio.gather(*(grade(it, c) for it, c in answers[:IN_FLIGHT]))  # warm up
        t0 = time.perf_counter()
        for k in range(0, len(answers), IN_FLIGHT):
            await asyncio.gather(*(grade(it, c) for it, c in answers[k : k + IN_FLIGHT]))
        return len(answers) / (time.perf_counter() - t0)

    try:
        return [
            ("worker thread per answer (before)",
             await rate(lambda it, c: asyncio.to_thread(grader.grade, it, c.text))),
            ("the oracle's path (known-linear check, then the same thread)",
             await rate(lambda it, c: oracle._graded(grader, it, c))),
            (f"grading processes ({oracle.grading.size}, time limit "
             f"{oracle.grading.timeout_s:g} s per answer)",
             await rate(lambda it, c: oracle.grading.grade(it, c.text))),
        ]  # fmt: skip
    finally:
        await oracle.aclose()


# gpqa's flexible-extract (also mmlu flan cot's), on a document of four choices.
MC_STEP = {"regex_pattern": r"(\([A-Z]\))", "group_select": -1, "ignore_case": True,
           "ignore_punctuation": True}  # fmt: skip
MC_ANSWERS = ["The answer is (C).", "Ber-lin, of course!", "I think: C", "no idea", "(a) or (D)?"]


def _mcregex_rates() -> list[tuple[str, float]]:
    from gemfinder.backends.base import Completion
    from gemfinder.oracles import InferenceOracle
    from gemfinder.tasks import Item
    from lm_eval.filters.extraction import MultiChoiceRegexFilter

    doc = {"choices": ["Paris!", "London", "Ber-lin", "Rome."]}
    item = Item("gpqa/0", "lm_eval", {
        "lm_eval": "gpqa_main_cot_zeroshot", "output_type": "generate_until", "doc": doc,
        "prompt": "Q", "until": ["</s>"], "max_gen_toks": 256, "target": "(C)",
        "metric": {"name": "exact_match",
                   "kwargs": {"ignore_case": True, "ignore_punctuation": True}},
        "filter": {"name": "flexible-extract",
                   "steps": [["multi_choice_regex", MC_STEP], ["take_first", None]]},
    })  # fmt: skip
    grader = get_task("lm_eval")
    assert grader.validate(item) is None, grader.validate(item)
    own = MultiChoiceRegexFilter(**MC_STEP)
    slow = MC_ANSWERS * 4
    t0 = time.perf_counter()
    for r in slow:  # one answer per call, as a grader sees them
        own.apply([[r]], [doc])
    rates = [("lm-eval's own filter, in-process", len(slow) / (time.perf_counter() - t0))]
    fast = MC_ANSWERS * 200
    grader.grade(item, fast[0])  # the table, once per process
    t0 = time.perf_counter()
    for r in fast:
        grader.grade(item, r)
    rates.append(("gemfinder's grader, in-process", len(fast) / (time.perf_counter() - t0)))

    async def pooled() -> float:
        oracle = InferenceOracle()
        answers = [Completion(r, None, None) for r in fast]
        try:
            await asyncio.gather(*(oracle._graded(grader, item, c) for c in answers[:IN_FLIGHT]))
            t0 = time.perf_counter()
            for k in range(0, len(answers), IN_FLIGHT):
                batch = answers[k : k + IN_FLIGHT]
                await asyncio.gather(*(oracle._graded(grader, item, c) for c in batch))
            return len(answers) / (time.perf_counter() - t0)
        finally:
            await oracle.aclose()

    rates.append(("the oracle's path (grading processes)", asyncio.run(pooled())))
    return rates


if __name__ == "__main__":
    main()
