"""Run every MBPP reference solution through the sandboxed grader, plus two wrong variants.

Usage: python -m bench.studies.mbpp_reference [--data ../shared/data] [--limit N] [--workers 2]
Expected: all references pass except the Python-version dependent tasks 341, 596, 642
(SOURCE.md); the wrong variants (no code; every function returning None) all fail.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gemfinder.tasks import Item, get_task

from bench.common.shared_data import SHARED_DATA, require

KNOWN_BROKEN = {341, 596, 642}


def returns_none(code: str) -> str:
    """The reference with each top-level function redefined to return None."""
    names = re.findall(r"^def\s+(\w+)\s*\(", code, re.MULTILINE)
    return code + "\n\n" + "\n".join(f"def {n}(*a, **k):\n    return None" for n in names)


def load_items(data: Path) -> list[tuple[int, Item, str]]:
    out = []
    for line in (data / "mbpp" / "mbpp.jsonl").read_text().splitlines():
        rec = json.loads(line)
        fields = {k: rec[k] for k in ("text", "test_list", "test_setup_code", "code")}
        out.append((rec["task_id"], Item(str(rec["task_id"]), "mbpp", fields), rec["code"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    require(args.data / "mbpp" / "mbpp.jsonl", option="--data DIR")
    items = load_items(args.data)[: args.limit]
    task = get_task("mbpp")

    def check(entry):
        tid, item, code = entry
        ref = task.grade(item, f"```python\n{code}\n```").correct
        empty = task.grade(item, "pass").correct
        wrong = task.grade(item, f"```python\n{returns_none(code)}\n```").correct
        return tid, ref, empty, wrong

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(check, items))
    failed = sorted(tid for tid, ref, _, _ in results if not ref)
    print(f"references pass: {len(results) - len(failed)}/{len(results)}")
    print(f"failing references: {failed} (known broken: {sorted(KNOWN_BROKEN)})")
    wrong_pass = sorted(tid for tid, _, e, w in results if e or w)
    print(f"wrong variants passing (should be none): {wrong_pass}")
    print(f"time: {time.monotonic() - start:.1f} s with {args.workers} workers")


if __name__ == "__main__":
    main()
