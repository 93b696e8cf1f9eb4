"""Proto <-> domain: requests become validated `SearchSpec`s, stored searches become messages.

Field paths in UserErrors follow the proto names (`spec.candidates[2].endpoint`) so clients see
which field to fix in the BadRequest field violations.
"""

from __future__ import annotations

import json
from dataclasses import asdict

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
# elapsed: a Duration; certificate: a message of its own
_PROGRESS_OPTIONAL = ("gpu_seconds", "gpu_seconds_cap")
_PROGRESS_FIELDS = [
    k for k in asdict(Progress()) if k not in ("elapsed_s", "certificate", *_PROGRESS_OPTIONAL)
]
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


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


# One converter each way per value (search.values); the stored JSON is the values' own.
def progress_to_proto(p: Progress | None) -> pb.Progress:
    if p is None:  # before the first count: an empty message, as ever
        return pb.Progress()
    counts = {k: getattr(p, k) for k in _PROGRESS_FIELDS}
    out = pb.Progress(**counts, elapsed=_duration(p.elapsed_s))
    for name in _PROGRESS_OPTIONAL:
        if getattr(p, name) is not None:
            setattr(out, name, getattr(p, name))
    if p.certificate is not None:
        out.certificate.CopyFrom(certificate_to_proto(p.certificate))
    return out


def progress_from_proto(msg: pb.Progress) -> Progress:
    return Progress(
        **{f: getattr(msg, f) for f in _PROGRESS_FIELDS},
        elapsed_s=msg.elapsed.ToNanoseconds() / 1e9,
        certificate=certificate_from_proto(msg),
        **{f: getattr(msg, f) if msg.HasField(f) else None for f in _PROGRESS_OPTIONAL},
    )


def certificate_to_proto(c: Certificate) -> pb.Certificate:
    return pb.Certificate(
        epsilon_reached=c.epsilon_reached,
        delta=c.delta,
        epsilon=c.epsilon if c.epsilon is not None else 0.0,
        certified=c.certified,
    )


def certificate_from_proto(msg: pb.Progress | pb.SearchResult) -> Certificate | None:
    if not msg.HasField("certificate"):
        return None
    c = msg.certificate
    epsilon = c.epsilon if c.epsilon > 0 else None
    return Certificate(c.epsilon_reached, c.delta, epsilon, c.certified)


def estimate_to_proto(e: Estimate) -> pb.ModelEstimate:
    # to_json, not asdict: a cheap shallow dict (see Estimate.to_json).
    return pb.ModelEstimate(**{k: v for k, v in e.to_json().items() if v is not None})


def estimate_from_proto(msg: pb.ModelEstimate) -> Estimate:
    values = {f.name: getattr(msg, f.name) for f in msg.DESCRIPTOR.fields}
    return Estimate(**values | {"downloads": msg.downloads if msg.HasField("downloads") else None})


def result_to_proto(r: Result) -> pb.SearchResult:
    out = pb.SearchResult(
        recommended_model_id=r.recommended_model_id,
        ranking=[estimate_to_proto(e) for e in r.ranking],
        queries_spent=r.queries_spent,
        queries_failed=r.queries_failed,
        queries_cached=r.queries_cached,
        exhaustive_queries=r.exhaustive_queries,
        elapsed=_duration(r.elapsed_s),
        winner=estimate_to_proto(r.winner),
        hidden_gem=r.hidden_gem,
        gem_verdict=GEM_VERDICTS.get(r.gem_verdict, pb.GEM_VERDICT_UNSPECIFIED),
        gem_evidence=[pb.PairedComparison(**asdict(p)) for p in r.gem_evidence],
        gem_check_queries=r.gem_check_queries,
        per_task=[
            pb.TaskResult(
                task=t.task,
                weight=t.weight,
                items=t.items,
                estimates=[estimate_to_proto(e) for e in t.estimates],
            )
            for t in r.per_task
        ],
        overall=[estimate_to_proto(e) for e in r.overall],
    )
    if r.most_popular is not None:
        out.most_popular.CopyFrom(estimate_to_proto(r.most_popular))
    if r.cost is not None:
        cost = r.cost
        out.serving_cost.CopyFrom(
            pb.ServingCost(
                gpu_seconds=cost.gpu_seconds,
                load_gpu_seconds=cost.load_gpu_seconds,
                queries=cost.queries,
                model_loads=cost.model_loads,
                adapter_loads=cost.adapter_loads,
                swaps=cost.swaps,
                wall=_duration(cost.wall_s),
                endpoints=[pb.EndpointServingCost(**e.to_json()) for e in cost.endpoints],
                gpu_seconds_cap=cost.gpu_seconds_cap,
                stopped_by_cap=cost.stopped_by_cap,
            )
        )
    if r.incremental is not None:
        i = r.incremental
        out.incremental.CopyFrom(
            pb.IncrementalOutcome(
                parent_search_id=i.parent_search_id,
                parent_winner_model_id=i.parent_winner_model_id,
                winner_changed=i.winner_changed,
                incumbents=i.incumbents,
                newcomers=i.newcomers,
                removed=i.removed,
                left_out=i.left_out,
            )
        )
    if r.certificate is not None:
        out.certificate.CopyFrom(certificate_to_proto(r.certificate))
    return out


def result_from_proto(msg: pb.SearchResult) -> Result:
    popular = estimate_from_proto(msg.most_popular) if msg.HasField("most_popular") else None
    return Result(
        recommended_model_id=msg.recommended_model_id,
        ranking=tuple(estimate_from_proto(e) for e in msg.ranking),
        queries_spent=msg.queries_spent,
        queries_failed=msg.queries_failed,
        queries_cached=msg.queries_cached,
        exhaustive_queries=msg.exhaustive_queries,
        elapsed_s=msg.elapsed.ToNanoseconds() / 1e9,
        winner=estimate_from_proto(msg.winner),
        most_popular=popular,
        hidden_gem=msg.hidden_gem,
        gem_verdict=VERDICT_NAMES.get(msg.gem_verdict, ""),
        gem_evidence=tuple(
            Paired(**{f.name: getattr(p, f.name) for f in p.DESCRIPTOR.fields})
            for p in msg.gem_evidence
        ),
        gem_check_queries=msg.gem_check_queries,
        per_task=tuple(
            TaskResult(
                task=t.task,
                weight=t.weight,
                items=t.items,
                estimates=tuple(estimate_from_proto(e) for e in t.estimates),
            )
            for t in msg.per_task
        ),
        overall=tuple(estimate_from_proto(e) for e in msg.overall),
        incremental=_incremental_from_proto(msg),
        certificate=certificate_from_proto(msg),
        cost=_cost_from_proto(msg.serving_cost) if msg.HasField("serving_cost") else None,
    )


def _cost_from_proto(msg: pb.ServingCost) -> Cost:
    return Cost(
        gpu_seconds=msg.gpu_seconds,
        load_gpu_seconds=msg.load_gpu_seconds,
        queries=msg.queries,
        model_loads=msg.model_loads,
        adapter_loads=msg.adapter_loads,
        swaps=msg.swaps,
        wall_s=msg.wall.ToNanoseconds() / 1e9,
        endpoints=tuple(
            EndpointCost(
                url=e.url,
                gpu_seconds=e.gpu_seconds,
                queries=e.queries,
                query_s=e.query_s,
                query_s_measured=e.query_s_measured,
                measured_queries=e.measured_queries,
            )
            for e in msg.endpoints
        ),
        gpu_seconds_cap=msg.gpu_seconds_cap if msg.HasField("gpu_seconds_cap") else None,
        stopped_by_cap=msg.stopped_by_cap,
    )


def _incremental_from_proto(msg: pb.SearchResult) -> Incremental | None:
    if not msg.HasField("incremental"):
        return None
    i = msg.incremental
    return Incremental(
        parent_search_id=i.parent_search_id,
        parent_winner_model_id=i.parent_winner_model_id,
        winner_changed=i.winner_changed,
        incumbents=tuple(i.incumbents),
        newcomers=tuple(i.newcomers),
        removed=tuple(i.removed),
        left_out=i.left_out,
    )


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


def plan_to_proto(found: Plan) -> pb.SearchPlan:
    def spread(s: Spread) -> pb.Spread:
        return pb.Spread(mean=s.mean, p10=s.p10, p90=s.p90)

    return pb.SearchPlan(
        algorithm=found.algorithm,
        budget=found.budget,
        models=found.models,
        items=found.items,
        trials=found.trials,
        quality_trials=found.quality_trials,
        queries=spread(found.queries),
        prompt_tokens=spread(found.prompt_tokens),
        generated_tokens=spread(found.generated_tokens),
        token_source=found.token_source,
        model_loads=spread(found.model_loads),
        adapter_loads=spread(found.adapter_loads),
        swaps=spread(found.swaps),
        gpu_seconds=spread(found.gpu_seconds),
        load_gpu_seconds=spread(found.load_gpu_seconds),
        wall_seconds=spread(found.wall_s),
        loss_mean=found.loss_mean,
        loss_p90=found.loss_p90,
        p_best=found.p_best,
        accounted=found.accounted,
        planned_budget=found.planned_budget,
        gpu_seconds_cap=found.gpu_seconds_cap,
        capped=found.capped,
        cached=spread(found.cached),
    )
