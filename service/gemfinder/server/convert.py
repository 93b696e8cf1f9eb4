"""Proto <-> domain: requests become validated `SearchSpec`s, stored searches become messages.

Field paths in UserErrors follow the proto names (`spec.candidates[2].endpoint`) so clients see
which field to fix in the BadRequest field violations.
"""

from __future__ import annotations

import json

from google.protobuf import duration_pb2, timestamp_pb2

from gemfinder import _core, bounded_json
from gemfinder.backends.registry import BY_NAME, DEFAULT, REGISTRY
from gemfinder.budget import Budget
from gemfinder.candidates import Candidate, candidate_from_dict
from gemfinder.cost import Cost, EndpointCost
from gemfinder.errors import UserError
from gemfinder.search import gem
from gemfinder.search.incremental import DEFAULT_INCUMBENTS, check_incumbents
from gemfinder.search.plan import Plan, Spread
from gemfinder.search.spec import IncrementalAsk, Limits, SearchSpec, default_algorithm
from gemfinder.search.values import (
    Certificate,
    Estimate,
    Incremental,
    Paired,
    Progress,
    Result,
    TaskResult,
)
from gemfinder.server.message_fields import Fields
from gemfinder.store import SearchRow
from gemfinder.tasks import Item, parse_item
from gemfinder.tasks.lmeval import TASK_KIND
from gemfinder.tasks.lmeval import catalog as lm_eval_catalog
from gemfinder.tasks.lmeval import patterns as lm_eval_patterns
from gemfinder.v1 import gemfinder_pb2 as pb

# Enum value -> gemfinder's short name (the registry checks at import that it has every value).
BACKENDS = {pb.BACKEND_UNSPECIFIED: DEFAULT, **{v: b.name for v, b in REGISTRY.items()}}
STATES = {
    "pending": pb.SEARCH_STATE_PENDING,
    "running": pb.SEARCH_STATE_RUNNING,
    "succeeded": pb.SEARCH_STATE_SUCCEEDED,
    "failed": pb.SEARCH_STATE_FAILED,
    "cancelled": pb.SEARCH_STATE_CANCELLED,
}
STATE_NAMES = {v: k for k, v in STATES.items()}
GEM_VERDICTS = {
    gem.HIDDEN_GEM: pb.GEM_VERDICT_HIDDEN_GEM,
    gem.NOT_A_GEM: pb.GEM_VERDICT_NOT_A_GEM,
    gem.UNDETERMINED: pb.GEM_VERDICT_UNDETERMINED,
    gem.NO_POPULARITY: pb.GEM_VERDICT_NO_POPULARITY,
}
VERDICT_NAMES = {v: k for k, v in GEM_VERDICTS.items()}
SYSTEM_PROMPTS = {
    pb.SYSTEM_PROMPT_POLICY_UNSPECIFIED: False,
    pb.SYSTEM_PROMPT_POLICY_NONE: False,
    pb.SYSTEM_PROMPT_POLICY_SYSTEM: True,
}
MAX_REQUEST_ID = 128


def spec_to_proto(
    candidates: list[Candidate], items: list[Item], per_model: int, seed: int = 0, **fields
) -> pb.SearchSpec:
    """The request a client sends for these candidates and inline items (the inverse of
    `spec_from_proto`); `fields` sets any other SearchSpec field."""
    return pb.SearchSpec(
        candidates=[
            pb.Candidate(
                model_id=c.model_id,
                endpoint=c.endpoint,
                backend=BY_NAME[c.backend].enum,
                adapter_id=c.adapter_id or "",
                downloads=c.downloads,
                official=c.official,
                prior_score=c.prior_score,
            )
            for c in candidates
        ],
        query_set=pb.QuerySet(
            inline=pb.InlineQuerySet(
                items=[
                    pb.QueryItem(id=it.id, task=it.task, fields_json=json.dumps(it.fields))
                    for it in items
                ]
            )
        ),
        budget=pb.Budget(per_model=per_model),
        seed=seed,
        **fields,
    )


def request_id(value: str) -> str | None:
    if len(value) > MAX_REQUEST_ID:
        raise UserError("request_id", f"at most {MAX_REQUEST_ID} characters")
    return value or None


LM_EVAL_FIELD = "spec.query_set.lm_eval"


def lm_eval_request(msg: pb.LmEvalQuerySet, limits: Limits) -> lm_eval_catalog.Request:
    """The caller's choices about an lm-eval query set; the data are the operator's."""
    if msg.limit > limits.max_items:
        raise UserError(f"{LM_EVAL_FIELD}.limit", f"at most {limits.max_items} items")
    return lm_eval_catalog.Request(
        task=msg.task,
        num_fewshot=msg.num_fewshot if msg.HasField("num_fewshot") else None,
        limit=msg.limit or None,
        seed=msg.seed if msg.HasField("seed") else 1234,
        metric=msg.metric or None,
        filter_name=msg.filter or None,
        fewshot_as_multiturn=(
            msg.fewshot_as_multiturn if msg.HasField("fewshot_as_multiturn") else True
        ),
    )


def spec_from_proto(
    msg: pb.SearchSpec,
    query_sets: dict[str, list[Item]],
    default_per_model: int,
    limits: Limits,
    lm_eval_items: list[Item] | None = None,
    lm_eval_patterns: frozenset[str] = frozenset(),
) -> SearchSpec:
    """`lm_eval_items`: the query set the service built for a `query_set.lm_eval` (blocking
    work it did off the event loop); `lm_eval_patterns`: the regular expressions inline
    `lm_eval` items may name (tasks.lmeval.patterns; read off the event loop too)."""
    if len(msg.candidates) < 2:
        raise UserError("spec.candidates", "need at least 2 candidates")
    if len(msg.candidates) > limits.max_candidates:
        raise UserError("spec.candidates", f"at most {limits.max_candidates} candidates")
    candidates = []
    for i, c in enumerate(msg.candidates):
        where = f"spec.candidates[{i}]"
        if c.backend not in BACKENDS:
            raise UserError(f"{where}.backend", "unknown backend")
        record = {"model_id": c.model_id, "endpoint": c.endpoint, "backend": BACKENDS[c.backend]}
        if c.adapter_id:
            record["adapter_id"] = c.adapter_id
        if c.HasField("downloads"):
            record["downloads"] = c.downloads
        if c.HasField("prior_score"):
            record["prior_score"] = c.prior_score
        record["official"] = c.official
        candidates.append(candidate_from_dict(record, where))
    items, name = _items(msg, query_sets, limits, lm_eval_items, lm_eval_patterns)
    budget = _budget(msg.budget, len(candidates), default_per_model)
    if msg.system_prompt not in SYSTEM_PROMPTS:  # proto3 keeps unknown enum numbers
        known = ", ".join(pb.SystemPromptPolicy.keys())
        raise UserError("spec.system_prompt", f"unknown value {msg.system_prompt} (known: {known})")
    algorithm = msg.algorithm or default_algorithm(candidates)
    if algorithm not in _core.ALGORITHMS:
        raise UserError("spec.algorithm", f"unknown; known: {', '.join(_core.ALGORITHMS)}")
    spec = SearchSpec(
        candidates=candidates,
        items=items,
        budget=budget.total,
        algorithm=algorithm,
        params=dict(msg.params),
        seed=msg.seed,
        system_prompt=SYSTEM_PROMPTS[msg.system_prompt],
        query_set=name,
        allow_unreachable=msg.allow_unreachable_endpoints,
        task_weights=dict(msg.task_weights),
    )
    if msg.HasField("gem_check_share"):
        spec.gem_check_share = msg.gem_check_share
    if msg.HasField("prior_strength"):
        spec.prior_strength = msg.prior_strength
    if msg.HasField("epsilon"):
        spec.epsilon = msg.epsilon
    if msg.HasField("delta"):
        if not msg.HasField("epsilon"):
            raise UserError("spec.delta", "applies to fixed-confidence searches: set spec.epsilon")
        spec.delta = msg.delta
    if msg.HasField("gpu_seconds"):
        spec.gpu_seconds = msg.gpu_seconds
    spec.validate(limits, asked=budget.asked)
    if msg.parent_search_id:
        spec.ask = _incremental_ask(msg, default_per_model)
    elif msg.HasField("incumbents"):
        raise UserError("spec.incumbents", "only for an incremental search (parent_search_id)")
    return spec


def _incremental_ask(msg: pb.SearchSpec, default_per_model: int) -> IncrementalAsk:
    """The budget of an incremental search is per newcomer (per_model, or the default) or the
    newcomers' total; the manager narrows the candidates (search.incremental)."""
    k = msg.incumbents if msg.HasField("incumbents") else DEFAULT_INCUMBENTS
    which = msg.budget.WhichOneof("amount")
    per_newcomer = None if which == "total" else float(msg.budget.per_model or default_per_model)
    return IncrementalAsk(
        msg.parent_search_id, check_incumbents(k, "spec.incumbents"), per_newcomer
    )


def _budget(msg: pb.Budget, n_models: int, default_per_model: int) -> Budget:
    share = "spec.gem_check_share"
    if msg.WhichOneof("amount") == "total":
        return Budget.of_total(msg.total, "spec.budget.total", share)
    if msg.WhichOneof("amount") == "per_model":
        return Budget.of_per_model(msg.per_model, n_models, "spec.budget.per_model", share)
    return Budget.of_per_model(
        None, n_models, "spec.budget.per_model", share, default_per_model, "spec.budget"
    )


def has_inline_lm_eval(msg: pb.SearchSpec) -> bool:
    """Whether the request carries inline lm_eval items (whose patterns need the allowed set)."""
    return msg.query_set.WhichOneof("source") == "inline" and any(
        it.task == TASK_KIND for it in msg.query_set.inline.items
    )


def _items(msg, query_sets, limits, lm_eval_items, patterns) -> tuple[list[Item], str | None]:
    which = msg.query_set.WhichOneof("source")
    if which == "lm_eval":
        if lm_eval_items is None:
            raise ValueError("an lm_eval query set is built by the service before conversion")
        return lm_eval_items, f"lm_eval:{msg.query_set.lm_eval.task}"
    if which == "name":
        items = query_sets.get(msg.query_set.name)
        if items is None:
            known = ", ".join(sorted(query_sets)) or "none registered"
            raise UserError("spec.query_set.name", f"unknown query set (known: {known})")
        return items, msg.query_set.name
    if which != "inline":
        raise UserError(
            "spec.query_set", "required: a registered name, inline items or an lm-eval task"
        )
    inline = msg.query_set.inline.items
    if len(inline) > limits.max_items:
        raise UserError("spec.query_set.inline.items", f"at most {limits.max_items} items")
    items, seen = [], set()
    for i, it in enumerate(inline):
        where = f"spec.query_set.inline.items[{i}]"
        try:
            fields = bounded_json.loads(it.fields_json or "{}")
        except bounded_json.BadJson as err:
            raise UserError(f"{where}.fields_json", str(err)) from None
        if not isinstance(fields, dict):
            raise UserError(f"{where}.fields_json", "must be a JSON object")
        item = parse_item(json.dumps({**fields, "id": it.id, "task": it.task}), where)
        if item.task == TASK_KIND:  # a caller's regex must not freeze the server
            bad = lm_eval_patterns.check(item.fields, patterns)
            if bad:
                raise UserError(f"{where}.fields_json.{bad[0]}", bad[1])
        if item.id in seen:
            raise UserError(f"{where}.id", f"duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items, None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _seconds(d: duration_pb2.Duration) -> float:
    return d.ToNanoseconds() / 1e9


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


# One pair each way per value (search.values, cost, search.plan), field by field by name
# (server.message_fields); the stored JSON is the values' own. Only what differs is stated.
SECONDS = (_duration, _seconds)
CERTIFICATE = Fields(
    Certificate,
    pb.Certificate,
    # A fixed-budget search has no target: 0 on the wire (a target is positive).
    convert={"epsilon": (lambda e: 0.0 if e is None else e, lambda e: e if e > 0 else None)},
)
ESTIMATE = Fields(Estimate, pb.ModelEstimate)
PROGRESS = Fields(
    Progress,
    pb.Progress,
    renamed={"elapsed_s": "elapsed"},
    convert={"elapsed_s": SECONDS},
    nested={"certificate": CERTIFICATE},
)
COST = Fields(
    Cost,
    pb.ServingCost,
    renamed={"wall_s": "wall"},
    convert={"wall_s": SECONDS},
    nested={"endpoints": Fields(EndpointCost, pb.EndpointServingCost)},
)
INCREMENTAL = Fields(Incremental, pb.IncrementalOutcome, skip=("known",))  # known: stored only
TASK_RESULT = Fields(TaskResult, pb.TaskResult, nested={"estimates": ESTIMATE})
RESULT = Fields(
    Result,
    pb.SearchResult,
    renamed={"elapsed_s": "elapsed", "cost": "serving_cost"},
    convert={
        "elapsed_s": SECONDS,
        "gem_verdict": (
            lambda v: GEM_VERDICTS.get(v, pb.GEM_VERDICT_UNSPECIFIED),
            lambda v: VERDICT_NAMES.get(v, ""),
        ),
    },
    nested={
        "ranking": ESTIMATE,
        "winner": ESTIMATE,
        "most_popular": ESTIMATE,
        "overall": ESTIMATE,
        "gem_evidence": Fields(Paired, pb.PairedComparison),
        "per_task": TASK_RESULT,
        "incremental": INCREMENTAL,
        "certificate": CERTIFICATE,
        "cost": COST,
    },
)
_SPREAD = Fields(Spread, pb.Spread)
PLAN = Fields(
    Plan,
    pb.SearchPlan,
    renamed={"wall_s": "wall_seconds"},
    nested=dict.fromkeys(
        (
            "queries",
            "prompt_tokens",
            "generated_tokens",
            "model_loads",
            "adapter_loads",
            "swaps",
            "gpu_seconds",
            "load_gpu_seconds",
            "wall_s",
        ),
        _SPREAD,
    ),  # fmt: skip
)

estimate_to_proto = ESTIMATE.to_message
progress_from_proto = PROGRESS.from_message
result_to_proto = RESULT.to_message
result_from_proto = RESULT.from_message
plan_to_proto = PLAN.to_message


def progress_to_proto(p: Progress | None) -> pb.Progress:
    if p is None:  # before the first count: an empty message, as ever
        return pb.Progress()
    return PROGRESS.to_message(p)


def search_to_proto(row: SearchRow, with_result: bool = True) -> pb.Search:
    spec = row.spec
    out = pb.Search(
        search_id=row.id,
        request_id=row.request_id or "",
        state=STATES[row.state],
        algorithm=spec["algorithm"],
        n_candidates=len(spec["candidates"]),
        n_items=len(spec["items"]),
        progress=progress_to_proto(row.progress),
        error=row.error or "",
        create_time=_timestamp(row.created),
        update_time=_timestamp(row.updated),
        parent_search_id=(spec.get("incremental") or {}).get("parent_search_id", ""),
    )
    if with_result and row.result is not None:
        out.result.CopyFrom(result_to_proto(row.result))
    return out
