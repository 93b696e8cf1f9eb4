"""Query-set records from an lm-eval task: the prompts lm-eval itself builds (its
`build_all_requests`, few-shot sampler included) and what grading needs.

One record per document. generate_until records carry `prompt`, `until`, `max_gen_toks`, the
gold `target`, the filter pipeline, the metric and `chat_messages` (what lm-eval sends a chat
model with its chat template applied); multiple_choice records carry `requests`
(one [context, continuation] pair per choice, exactly lm-eval's loglikelihood requests),
`choices` (for acc_norm's lengths) and `gold` (index, or list of indices).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.tasks.lmeval import LM_EVAL_VERSION, TASK_KIND
from gemfinder.tasks.lmeval.loading import CLI_HINT, FIELD, load_task
from gemfinder.tasks.lmeval.task import ZERO_ONE  # 0/1 per document; the task's first wins

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's models' default when generation_kwargs names none


@contextlib.contextmanager
def _compiled_templates() -> Iterator[None]:
    """lm-eval compiles each Jinja template anew on every use (`utils.apply_template`: 90 % of
    the time of a 5-shot build). Within the block the compiled template is reused: the same
    Environment renders it, so the text is the same (the parity tests compare it byte for byte).
    """
    from lm_eval import utils

    original = utils.apply_template
    compiled = functools.lru_cache(maxsize=1024)(utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compiled(template).render(**doc)

    utils.apply_template = apply_template
    try:
        yield
    finally:
        utils.apply_template = original


def _filters(task: Any) -> dict[str, list[list[Any]]]:
    """Filter pipelines by name, as [function name, kwargs] steps (JSON, rebuilt at grading)."""
    configs = task.config.filter_list
    if not configs:
        return {"none": [["take_first", None]]}
    pipelines: dict[str, list[list[Any]]] = {}
    for fc in configs:
        steps = []
        for fn in fc["filter"]:
            if not isinstance(fn["function"], str):
                raise UserError(FIELD, f"filter {fc['name']!r} calls Python code; not supported")
            steps.append([fn["function"], {k: v for k, v in fn.items() if k != "function"} or None])
        pipelines[fc["name"]] = steps
    return pipelines


def _metric(task: Any, output_type: str, wanted: str | None) -> tuple[str, dict[str, Any]]:
    names = list(task._metric_fn_list)
    zero_one = [n for n in names if n in ZERO_ONE[output_type]]
    if wanted is not None:
        if wanted not in names:
            raise UserError("--metric", f"task {task.config.task!r} has metrics {names}")
        if wanted not in zero_one:
            raise UserError("--metric", f"{wanted!r} is not 0/1 per item (0/1 metrics: {zero_one})")
        name = wanted
    elif zero_one:
        name = zero_one[0]
    else:
        raise UserError(
            FIELD,
            f"task {task.config.task!r} has no metric that is 0/1 per item (it has {names}); "
            f"gemfinder needs one of {', '.join(ZERO_ONE[output_type])}",
        )
    return name, dict(task._metric_fn_kwargs.get(name) or {})


def _gold_for_choices(task: Any, doc: dict[str, Any], choices: list[str]) -> int | list[int]:
    """lm-eval's multiple_choice gold (process_results): an index, -100 when out of range."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, list):
        return [i if i < len(choices) else -100 for i in gold]
    if isinstance(gold, str):
        return choices.index(gold) if gold in choices else -100
    return gold if gold < len(choices) else -100


def _check_task(task: Any) -> str:
    output_type = task.config.output_type
    if output_type not in ZERO_ONE:
        raise UserError(
            FIELD,
            f"task {task.config.task!r} has output_type {output_type!r}; supported: "
            "generate_until, multiple_choice",
        )
    if task.config.process_results is not None:
        raise UserError(FIELD, f"task {task.config.task!r} scores with its own process_results")
    if (task.config.repeats or 1) != 1:
        raise UserError(FIELD, f"task {task.config.task!r} samples {task.config.repeats} answers")
    if getattr(task, "MULTIMODAL", False):
        raise UserError(FIELD, f"task {task.config.task!r} needs images or audio")
    return output_type


def _json_chat(history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """lm-eval's chat template for OpenAI-chat APIs (TemplateAPI.apply_chat_template without a
    tokenizer): the messages as JSON, loaded back into the request's `messages`."""
    return json.dumps(history, ensure_ascii=False)


def _chat_messages(
    task: Any, limit: int | None, seed: int, multiturn: bool
) -> dict[int, list[dict[str, str]]]:
    """doc_id -> the messages lm-eval sends a chat model (`apply_chat_template`, and
    `fewshot_as_multiturn`: each shot a user/assistant pair, else one user turn). A second pass of
    lm-eval's own build from the same seed, so the few-shot examples are the plain prompt's."""
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(
        limit=limit,
        apply_chat_template=True,
        fewshot_as_multiturn=multiturn,
        chat_template=_json_chat,
    )
    return {inst.doc_id: json.loads(inst.arguments[0]) for inst in task.instances}


def records_from_task(
    task: Any,
    *,
    limit: int | None,
    seed: int,
    metric: str | None,
    filter_name: str | None,
    fewshot_as_multiturn: bool = True,
) -> list[dict[str, Any]]:
    """One record per document of an lm_eval task object (the first `limit` documents)."""
    with _compiled_templates():
        return _records(task, limit, seed, metric, filter_name, fewshot_as_multiturn)


def _records(
    task: Any,
    limit: int | None,
    seed: int,
    metric: str | None,
    filter_name: str | None,
    fewshot_as_multiturn: bool,
) -> list[dict[str, Any]]:
    output_type = _check_task(task)
    name = task.config.task
    metric_name, metric_kwargs = _metric(task, output_type, metric)
    if output_type == "multiple_choice" and "acc_mutual_info" in task._metric_fn_list:
        raise UserError(FIELD, f"task {name!r} uses acc_mutual_info (unconditional requests)")
    pipelines = _filters(task)
    if filter_name is None:
        filter_name = next(iter(pipelines))
    elif filter_name not in pipelines:
        raise UserError("--filter", f"task {name!r} has filters {list(pipelines)}")
    if output_type == "multiple_choice" and pipelines[filter_name] != [["take_first", None]]:
        raise UserError(FIELD, f"task {name!r} filters log-likelihoods; not supported")

    try:
        task.build_all_requests(limit=limit)  # lm-eval's own prompt construction
    except (ValueError, AssertionError) as err:  # e.g. fewer few-shot documents than shots
        if "larger than population" in str(err):  # random.sample: the few-shot pool is short
            raise UserError(
                "--num-fewshot",
                f"{task.config.num_fewshot} few-shot examples asked of {name!r}, but its "
                "few-shot split has fewer documents",
            ) from None
        raise UserError(FIELD, f"lm-eval could not build the prompts of {name!r}: {err}") from None
    by_doc: dict[int, list[Any]] = defaultdict(list)
    for inst in task.instances:
        by_doc[inst.doc_id].append(inst)
    provenance = {
        "lm_eval_version": LM_EVAL_VERSION,
        "task": name,
        "num_fewshot": task.config.num_fewshot,
        "seed": seed,
    }
    chat: dict[int, list[dict[str, str]]] = {}
    if output_type == "generate_until":  # chat backends generate; they give no log-likelihoods
        chat = _chat_messages(task, limit, seed, fewshot_as_multiturn)
        provenance["fewshot_as_multiturn"] = fewshot_as_multiturn
    records = []
    for doc_id in sorted(by_doc):
        insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
        doc = insts[0].doc
        rec: dict[str, Any] = {
            "id": f"{name}/{doc_id}",
            "task": TASK_KIND,
            "lm_eval": provenance,
            "output_type": output_type,
            "doc_id": doc_id,
            "doc": dict(doc),
            "metric": {"name": metric_name, "kwargs": metric_kwargs},
        }
        if output_type == "generate_until":
            ctx, gen_kwargs = insts[0].arguments
            until = gen_kwargs.get("until") or []
            gold = task.doc_to_target(doc)
            if task.config.doc_to_choice is not None:
                gold = task.doc_to_choice(doc)[gold]
            elif task.multiple_target:
                gold = list(gold)
            rec |= {
                "prompt": ctx,
                "until": [until] if isinstance(until, str) else list(until),
                "max_gen_toks": int(gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)),
                "target": gold,
                "multiple_target": bool(task.multiple_target),
                "filter": {"name": filter_name, "steps": pipelines[filter_name]},
                "chat_messages": chat[doc_id],
            }
        else:
            choices = task.doc_to_choice(doc)
            rec |= {
                "requests": [list(inst.arguments) for inst in insts],
                "choices": list(choices),
                "gold": _gold_for_choices(task, doc, choices),
                "multiple_target": bool(task.multiple_target),
            }
        records.append(rec)
    return records


def build_query_set(
    name: str,
    data_files: dict[str, Path],
    *,
    num_fewshot: int | None = None,
    limit: int | None = None,
    seed: int = 1234,
    metric: str | None = None,
    filter_name: str | None = None,
    include: tuple[str, ...] = (),
    data_hint: str = CLI_HINT,
    fewshot_as_multiturn: bool = True,
    on_task: Callable[[Any], None] | None = None,
) -> list[dict[str, Any]]:
    """Records for the first `limit` documents of lm-eval task `name` (all when None);
    `include`: the operator's own task YAML (directories or files), as lm-eval's include_path."""
    if limit is not None and limit < 1:
        raise UserError("--limit", "must be >= 1")
    task = load_task(name, data_files, num_fewshot, seed, include, data_hint)
    if on_task is not None:
        on_task(task)
    return records_from_task(
        task,
        limit=limit,
        seed=seed,
        metric=metric,
        filter_name=filter_name,
        fewshot_as_multiturn=fewshot_as_multiturn,
    )
