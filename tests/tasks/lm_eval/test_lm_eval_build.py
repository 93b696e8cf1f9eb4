"""Building lm-eval query sets: the CLI, local data files and the errors a user can fix, the
guard around lm-eval's code metric, and query sets read back by gemfinder's loader."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.tasks import get_task, load_query_set
from gemfinder.tasks.lmeval.build import build_query_set, records_from_task
from gemfinder.tasks.lmeval.codeeval import SandboxCodeEval, guarded_evaluate_load
from gemfinder.tasks.lmeval.loading import parse_data_files

from tests import lm_eval_support as sup


@pytest.fixture
def arc_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "test": sup.write_jsonl(tmp_path / "test.jsonl", sup.ARC_TEST),
        "train": sup.write_jsonl(tmp_path / "train.jsonl", sup.ARC_TRAIN),
    }


def test_cli_builds_a_query_set_the_loader_reads(tmp_path: Path, arc_files, capsys) -> None:
    out = tmp_path / "q.jsonl"
    code = main(
        ["queryset", "build", "--lm-eval-task", "arc_challenge", "--num-fewshot", "2",
         "--limit", "3", "--data-files", f"test={arc_files['test']}",
         f"train={arc_files['train']}", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "wrote 3 arc_challenge items (2-shot)" in capsys.readouterr().err
    items = load_query_set(out)
    assert [i.id for i in items] == ["arc_challenge/0", "arc_challenge/1", "arc_challenge/2"]
    first = items[0].fields
    assert first["output_type"] == "multiple_choice" and first["gold"] == 1
    assert first["requests"][1][1] == " carbon dioxide"  # target_delimiter + choice
    assert first["requests"][0][0].endswith(
        "Question: Which gas do plants take in to make food?\nAnswer:"
    )
    assert first["requests"][0][0].count("Question:") == 3  # 2 shots + the question
    task = get_task(items[0].task)
    assert task.grade_loglikelihoods(items[0], [-3.0, -1.0, -5.0, -9.0]).correct
    assert not task.grade_loglikelihoods(items[0], [-1.0, -3.0, -5.0, -9.0]).correct
    with pytest.raises(ValueError, match="graded from log-likelihoods"):
        task.grade(items[0], "B")


def test_generate_until_items_carry_their_own_decoding(tmp_path: Path, shared_data) -> None:
    rows = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 2)
    files = {"test": sup.write_jsonl(tmp_path / "t.jsonl", rows)}
    (rec,) = build_query_set("gsm8k", files, num_fewshot=0, limit=1)
    path = sup.write_jsonl(tmp_path / "q.jsonl", [rec])
    (item,) = load_query_set(path)
    task = get_task(item.task)
    gen = task.generation_for(item)
    assert gen.stop == ("Question:", "</s>", "<|im_end|>") and gen.max_new_tokens == 256
    assert (
        task.build_prompt(item, system_prompt=False).text
        == f"Question: {rows[0]['question']}\nAnswer:"
    )
    # TGI returns the stop string at the end; lm-eval's text ends before it.
    assert task.grade(item, "9 eggs... #### 18\n\nQuestion:").correct
    assert not task.grade(item, "#### 17").correct


def test_hand_edited_items_with_bad_fields_are_refused(tmp_path: Path, arc_files) -> None:
    from gemfinder.tasks import parse_item

    (rec,) = build_query_set("arc_challenge", arc_files, num_fewshot=0, limit=1)
    assert parse_item(json.dumps(rec), "ok").id == "arc_challenge/0"
    for change, reason in [
        ({"metric": {"name": "bleu", "kwargs": {}}}, "metric must be an object whose name"),
        ({"requests": [["ctx"]]}, "requests must be a non-empty list"),
        ({"choices": ["a"]}, "choices must list one string per request"),
        ({"output_type": "loglikelihood_rolling"}, "output_type must be"),
        ({"doc": "text"}, "doc must be an object"),
    ]:
        with pytest.raises(UserError, match=reason):
            parse_item(json.dumps({**rec, **change}), "q.jsonl:1")


def test_simulated_fleet_answers_exact_match_items_and_refuses_the_others(
    tmp_path: Path, shared_data, arc_files
) -> None:
    import random

    from gemfinder.sim.fleet.responder import UnanswerableTasks, respond
    from gemfinder.tasks import parse_item

    rows = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 6)
    files = {"test": sup.write_jsonl(tmp_path / "t.jsonl", rows)}
    rng = random.Random(0)
    for rec in build_query_set("gsm8k", files, num_fewshot=0, filter_name="flexible-extract"):
        item = parse_item(json.dumps(rec), "item")
        for correct in (True, False):
            assert get_task(item.task).grade(item, respond(item, correct, rng, False)).correct == (
                correct
            )
    (mc,) = build_query_set("arc_challenge", arc_files, num_fewshot=0, limit=1)
    with pytest.raises(UnanswerableTasks, match="not for multiple_choice"):
        respond(parse_item(json.dumps(mc), "item"), True, rng, False)


def test_missing_split_names_the_files_needed(arc_files) -> None:
    with pytest.raises(UserError) as err:
        build_query_set("arc_challenge", {"test": arc_files["test"]}, num_fewshot=3)
    msg = str(err.value)
    assert "needs local files for split(s) train" in msg
    assert "few-shot examples (3-shot)" in msg and "allenai/ai2_arc, config ARC-Challenge" in msg
    # At 0 shots the eval split alone is enough.
    assert len(build_query_set("arc_challenge", {"test": arc_files["test"]}, num_fewshot=0)) == 6


def test_unused_split_unknown_task_and_group_are_refused(arc_files) -> None:
    with pytest.raises(UserError, match="has no split.s. dev .it names test, train, valid"):
        build_query_set("arc_challenge", {**arc_files, "dev": arc_files["test"]})
    with pytest.raises(UserError, match="did you mean: arc_challenge"):
        build_query_set("arc_challange", arc_files)
    with pytest.raises(UserError, match="group or tag"):
        build_query_set("mmlu", arc_files)
    with pytest.raises(UserError, match="is not 0/1 per item|has metrics"):
        build_query_set("arc_challenge", arc_files, metric="f1")


def test_documents_that_do_not_fit_the_task_are_refused(tmp_path: Path) -> None:
    rows = [{"question": "What is 2 + 2?"}]  # gsm8k rows need `answer` too
    with pytest.raises(UserError, match="do not fit task 'gsm8k'.s templates: 'answer'"):
        build_query_set(
            "gsm8k", {"test": sup.write_jsonl(tmp_path / "t.jsonl", rows)}, num_fewshot=0
        )
    dev = sup.write_jsonl(tmp_path / "dev.jsonl", sup.MMLU_DEV[:2])
    test = sup.write_jsonl(tmp_path / "test.jsonl", sup.MMLU_TEST)
    with pytest.raises(UserError, match="could not build the prompts"):  # 5 shots, 2 examples
        build_query_set("mmlu_abstract_algebra", {"test": test, "dev": dev}, num_fewshot=5)


def test_data_file_specs_are_checked(tmp_path: Path) -> None:
    good = sup.write_jsonl(tmp_path / "a.jsonl", [{"x": 1}])
    assert parse_data_files([f"test={good}"]) == {"test": good}
    for spec, reason in [
        ("test", "SPLIT=PATH"),
        (f"test={tmp_path / 'nope.jsonl'}", "no such file"),
        (f"test={tmp_path / 'a.txt'}", "expected .jsonl"),
    ]:
        with pytest.raises(UserError, match=reason):
            parse_data_files([spec])
    with pytest.raises(UserError, match="given twice"):
        parse_data_files([f"test={good}", f"test={good}"])


def test_cli_error_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    code = main(["queryset", "build", "--lm-eval-task", "gsm8k", "--out", str(tmp_path / "q")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs local files for split(s) test, train" in err


def test_metric_that_is_not_zero_one_is_refused(tmp_path: Path) -> None:
    from lm_eval.api.task import ConfigurableTask

    data = sup.write_jsonl(tmp_path / "t.jsonl", [{"q": "Say hi", "a": "hi"}])
    task = ConfigurableTask(
        config={
            "task": "bleu_demo",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "{{q}}",
            "doc_to_target": "{{a}}",
            "metric_list": [{"metric": "bleu"}],
        }
    )
    with pytest.raises(UserError, match="no metric that is 0/1 per item"):
        records_from_task(task, limit=None, seed=0, metric=None, filter_name=None)


def test_lm_eval_code_metric_never_loads_from_the_hub(tmp_path: Path) -> None:
    import evaluate

    with guarded_evaluate_load():
        assert isinstance(evaluate.load("code_eval"), SandboxCodeEval)
        with pytest.raises(UserError, match="downloads code from the Hub"):
            evaluate.load("bleu")
    # lm-eval's mbpp module, imported under the guard, holds the sandboxed metric.
    build_query_set("mbpp", {"test": sup.write_jsonl(tmp_path / "t.jsonl", [_MBPP_DOC])})
    mbpp_utils = sys.modules["lm_eval.tasks.mbpp.utils"]
    assert isinstance(mbpp_utils.pass_at_k, SandboxCodeEval)


_MBPP_DOC = {
    "task_id": 11,
    "text": "Write a function that adds two numbers.",
    "code": "def add(a, b):\n    return a + b",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
    "test_setup_code": "",
    "challenge_test_list": [],
}


def test_hostile_candidate_runs_in_the_sandbox(tmp_path: Path) -> None:
    """The program lm-eval would have run unsandboxed through code_eval cannot touch the host."""
    target = tmp_path / "pwned"
    hostile = f"open({str(target)!r}, 'w').write('x')\ndef add(a, b):\n    return a + b"
    passed, _ = SandboxCodeEval().compute(
        references=["assert add(1, 2) == 3"], predictions=[[hostile]], k=[1]
    )
    assert not target.exists()
    assert json.dumps(passed)  # a result, whether or not the write raised inside


def test_a_data_file_that_is_not_json_lines_names_its_line(tmp_path: Path, capsys) -> None:
    # `datasets` raised its DatasetGenerationError traceback, naming neither file nor line.
    test = tmp_path / "test.jsonl"
    test.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n{"question": "x"\n', "utf-8")
    argv = ["queryset", "build", "--lm-eval-task", "gsm8k", "--num-fewshot", "0"]
    code = main([*argv, "--data-files", f"test={test}", "--out", str(tmp_path / "q.jsonl")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--data-files: {test} line 2: invalid JSON" in err
    assert not (tmp_path / "q.jsonl").exists()


def test_out_onto_a_data_file_is_refused(tmp_path: Path, arc_files, capsys) -> None:
    # The built query set replaced the documents it was built from.
    before = arc_files["test"].read_bytes()
    argv = ["queryset", "build", "--lm-eval-task", "arc_challenge", "--data-files"]
    argv += [f"{split}={path}" for split, path in arc_files.items()]
    assert main([*argv, "--out", str(arc_files["test"])]) == 2
    assert "--out: " in capsys.readouterr().err
    assert arc_files["test"].read_bytes() == before
