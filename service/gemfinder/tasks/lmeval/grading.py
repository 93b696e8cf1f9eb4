"""Grading `lm_eval` records as lm-eval grades: its filter pipeline and metric functions for
generated text, its acc / acc_norm / acc_bytes arithmetic for log-likelihoods.

Imports lm_eval's filter and metric modules only (milliseconds), never the task index.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from gemfinder.tasks.lmeval import mcregex
from gemfinder.tasks.lmeval.codeeval import run_candidate


def cut_at_until(text: str, until: list[str]) -> str:
    """Generated text as lm-eval's models return it: cut before the first stop string (TGI and
    OpenAI servers stop there too, TGI leaving the stop string at the end). lm-eval writes
    `text.split(term)[0]`; `partition` gives the same text without building a list of every
    piece (a reply of a million stop strings would make a million strings at once)."""
    for term in until:
        if term:
            text = text.partition(term)[0]
    return text


@functools.lru_cache(maxsize=256)
def _ensemble(name: str, steps_json: str) -> Any:
    """lm_eval.filters.build_filter_ensemble, but `multi_choice_regex` is lm-eval's filter with
    its Unicode punctuation table built once per process, not once per answer (mcregex)."""
    import lm_eval.filters  # noqa: F401 - importing it registers lm-eval's filters by name
    from lm_eval.api.filter import FilterEnsemble
    from lm_eval.api.registry import get_filter

    def step(fn: str) -> Any:
        return mcregex.filter_class() if fn == mcregex.NAME else get_filter(fn)

    steps = json.loads(steps_json)
    return FilterEnsemble(
        name=name, filters=[functools.partial(step(fn), **(kwargs or {})) for fn, kwargs in steps]
    )


def apply_filter(fields: dict[str, Any], response: str) -> Any:
    """The task's filter pipeline on one response (lm_eval's FilterEnsemble on one Instance)."""
    from lm_eval.api.instance import Instance

    f = fields["filter"]
    ensemble = _ensemble(f["name"], json.dumps(f["steps"]))
    inst = Instance(
        request_type="generate_until",
        doc=fields["doc"],
        arguments=(fields["prompt"], {"until": fields["until"]}),
        idx=0,
        resps=[response],
    )
    ensemble.apply([inst])
    return inst.filtered_resps[f["name"]]


def _metric_fn(name: str) -> Any:
    from lm_eval.api.registry import get_metric

    return get_metric(name)


def score_generation(fields: dict[str, Any], filtered: Any) -> float:
    """lm-eval's generate_until scoring (ConfigurableTask.process_results) for one metric."""
    metric, kwargs = fields["metric"]["name"], fields["metric"]["kwargs"]
    gold = fields["target"]
    if metric == "pass_at_1":  # code: run in gemfinder's sandbox, as code_eval would run it
        code = filtered[0] if isinstance(filtered, list) else filtered
        return 1.0 if run_candidate(str(code), str(gold)) else 0.0
    fn = _metric_fn(metric)
    if fields.get("multiple_target"):
        golds = gold if isinstance(gold, list) else [gold]
        if isinstance(filtered, str) and all(isinstance(g, str) for g in golds):
            # lm-eval scores all golds in one call: numpy then holds the reply once per gold,
            # each padded to the longest (2,000 golds x a 1 MiB reply: 8 GB). Any gold matching
            # is the same verdict, one gold at a time (string arrays compare element by element).
            hit = any(fn(references=[g], predictions=[filtered], **kwargs)[metric] for g in golds)
            return 1.0 if hit else 0.0
        score = fn(references=golds, predictions=[filtered] * len(golds), **kwargs)[metric]
        return 1.0 if score > 0.0 else 0.0
    if type(gold) is not type(filtered) and not isinstance(filtered, list):
        gold = type(filtered)(gold)
    score = fn(references=[gold], predictions=[filtered], **kwargs)
    return float(score[metric] if isinstance(score, dict) else score)


def grade_generation(fields: dict[str, Any], response: str) -> tuple[float, Any]:
    """(score, what the filter extracted) for one generated response."""
    filtered = apply_filter(fields, cut_at_until(response, fields["until"]))
    return score_generation(fields, filtered), filtered


def score_loglikelihoods(fields: dict[str, Any], lls: list[float]) -> tuple[float, int]:
    """(score, predicted choice) from one log-likelihood per request, as lm-eval computes
    acc (argmax), acc_norm (argmax per character) and acc_bytes (per UTF-8 byte)."""
    choices = fields["choices"]
    if len(lls) != len(choices):
        raise ValueError(f"expected {len(choices)} log-likelihoods, got {len(lls)}")
    arr = np.array(lls, dtype=float)
    metric = fields["metric"]["name"]
    if metric == "acc":
        pred = int(np.argmax(arr))
    elif metric == "acc_norm":
        pred = int(np.argmax(arr / np.array([float(len(c)) for c in choices])))
    elif metric == "acc_bytes":
        pred = int(np.argmax(arr / np.array([float(len(c.encode("utf-8"))) for c in choices])))
    else:
        raise ValueError(f"metric {metric!r} is not a log-likelihood accuracy")
    gold = fields["gold"]
    hit = pred in gold if fields.get("multiple_target") else pred == gold
    return (1.0 if hit else 0.0), pred
