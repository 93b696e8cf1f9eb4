"""The on-disk cache of lm-eval's task index: a process with a warm cache builds the same items
without ever constructing a TaskManager (its 9-35 s walk), and every way the cache can be wrong
(another include directory, an edited YAML, a YAML gone) falls back to lm-eval's own walk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gemfinder.tasks.lmeval import index
from gemfinder.tasks.lmeval.build import build_query_set

from tests import lm_eval_support as sup


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty cache directory; this process's memo of indexes forgotten (the TaskManager walk
    itself stays memoised: the tests need it once, not once each)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(d))
    index._memo.clear()
    yield d
    index._memo.clear()


@pytest.fixture
def arc_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "test": sup.write_jsonl(tmp_path / "test.jsonl", sup.ARC_TEST),
        "train": sup.write_jsonl(tmp_path / "train.jsonl", sup.ARC_TRAIN),
    }


def _no_walk(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a TaskManager was built although the cache holds the index")

    monkeypatch.setattr(index, "task_manager", refuse)


def test_a_warm_cache_gives_identical_items_without_a_task_manager(
    cache: Path, arc_files, shared_data, tmp_path: Path, monkeypatch
) -> None:
    rows = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 12)
    gsm = {
        "test": sup.write_jsonl(tmp_path / "g.jsonl", rows[:4]),
        "train": sup.write_jsonl(tmp_path / "gt.jsonl", rows[4:]),
    }
    walked = index.task_index()
    assert not walked.from_cache and len(walked.entries) > 10_000
    (written,) = cache.glob("lm-eval-index-*.json")
    tm = index.task_manager()
    assert walked.entries["arc_challenge"] == (
        "TASK",
        str(tm.task_index["arc_challenge"].yaml_path),
    )
    ref_arc = build_query_set("arc_challenge", arc_files, num_fewshot=3, limit=4)
    ref_gsm = build_query_set("gsm8k", gsm, num_fewshot=2, limit=3, seed=7)

    index._memo.clear()
    _no_walk(monkeypatch)
    assert index.task_index().from_cache
    assert build_query_set("arc_challenge", arc_files, num_fewshot=3, limit=4) == ref_arc
    assert build_query_set("gsm8k", gsm, num_fewshot=2, limit=3, seed=7) == ref_gsm
    assert list(cache.glob("lm-eval-index-*.json")) == [written]


def test_groups_and_unknown_names_are_told_apart_from_the_cache(cache: Path, monkeypatch) -> None:
    from gemfinder.errors import UserError
    from gemfinder.tasks.lmeval.loading import config_of

    index.task_index()  # warm
    index._memo.clear()
    _no_walk(monkeypatch)
    with pytest.raises(UserError, match="group or tag"):
        config_of("mmlu")
    assert config_of("hellaswag")["task"] == "hellaswag"


def test_a_yaml_gone_from_the_cache_falls_back_to_lm_evals_walk(cache: Path, caplog) -> None:
    index.task_index()
    (path,) = cache.glob("lm-eval-index-*.json")
    data = json.loads(path.read_text())
    real = data["entries"]["arc_easy"][1]
    data["entries"]["arc_easy"][1] = "/nonexistent/arc_easy.yaml"
    del data["entries"]["hellaswag"]
    path.write_text(json.dumps(data))
    index._memo.clear()
    entry, answered = index.lookup("arc_easy")
    assert str(entry.yaml_path) == real and not answered.from_cache
    # The walk takes 10-30 s: said before it starts (a typo of a task name waited silently).
    assert "'arc_easy' is not in the cached task index" in caplog.text
    assert json.loads(path.read_text())["entries"]["arc_easy"][1] == real  # rewritten
    entry, _ = index.lookup("hellaswag")
    assert entry is not None


def test_the_key_follows_the_include_directories_and_their_yaml(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    base = index.cache_key(())
    empty = index.cache_key((str(mine),))
    (mine / "t.yaml").write_text("task: t\n")
    one = index.cache_key((str(mine),))
    (mine / "t.yaml").write_text("task: t2\n")
    os.utime(mine / "t.yaml", ns=(1, 1))
    edited = index.cache_key((str(mine),))
    assert len({base, empty, one, edited}) == 4
    assert index.cache_key((str(mine),)) == edited  # deterministic


def test_an_unwritable_cache_costs_the_walk_but_is_no_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(blocker / "sub"))  # under a file: ENOTDIR
    index._memo.clear()
    try:
        assert "gsm8k" in index.task_index().entries
    finally:
        index._memo.clear()


def test_a_fresh_process_with_a_warm_cache_builds_in_seconds(
    cache: Path, arc_files, tmp_path: Path
) -> None:
    """The CLI end to end, twice in new processes: the second reads the cache the first wrote."""
    env = {**os.environ, "GEMFINDER_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "gemfinder", "queryset", "build", "--lm-eval-task",
           "arc_challenge", "--num-fewshot", "2", "--limit", "3", "--data-files",
           f"test={arc_files['test']}", f"train={arc_files['train']}"]  # fmt: skip
    times, outs = [], []
    for i in range(2):
        out = tmp_path / f"q{i}.jsonl"
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--out", str(out)], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        outs.append(out.read_text())
    assert outs[0] == outs[1] and outs[0].count("\n") == 3
    print(f"cold {times[0]:.1f} s, warm {times[1]:.1f} s")
    assert times[1] < times[0]
