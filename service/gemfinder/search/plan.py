"""What a search will cost and how well it will choose, before it sends a query (`gemfinder
plan`, the PlanSearch RPC; docs/service.md "Planning a search").

The spec's algorithm runs on a synthetic model tree of the same size (gemfinder.sim.trees, the
`qwen2.5-7b` preset's shape): the candidate with the k-th most downloads plays the synthetic
model with the k-th most downloads, so popularity relates to accuracy as in the published trees
(without downloads each cost trial deals the synthetic models afresh: `_deal`).
- Cost: for a few trials the core's scheduler itself runs the search (the same pulls, in the
  same load-aware order, as the runner hands out), the gem check included, and every pull is
  replayed through one gemfinder.cost.SlotLedger per endpoint built from the endpoints' cost
  models, exactly as the runner accounts a live search. The trials give the mean and the spread.
  Under a GPU-second cap the budget is the one a start plans (search.gpu_budget, which replays
  searches with this module) and each trial stops where the runner's SearchCost.would_pass
  check stops the search; the plan says how often it did (`capped`). An incremental search is
  planned on the pool its start narrows it to, its incumbents' answers that the evaluation
  cache holds told from it, free, as the runner tells them (search.plan_incremental).
- Quality: many more trials in the Rust simulator (`simulate_trials`, `simulate_certified`):
  the loss in accuracy points (the best model's accuracy minus the pick's) and P(best).
- Tokens: prompt tokens are the query set's prompts as the endpoints get them, counted as
  characters / 4 (no tokenizer is at hand: a rule of thumb for English text under BPE
  tokenizers, so an estimate); generated tokens are each task's max_new_tokens, the most an
  answer may take: an upper bound (items scored by loglikelihood generate none; their prompt
  is every choice's context and continuation).

Bounded, by counts rather than time so that a plan is the same on every machine: the synthetic
tree has at most MAX_CELLS cells (fewer items beyond it; the plan says how many it simulated),
the cost trials replay at most MAX_PULLS pulls together and a budget above it is refused, the
quality trials at most QUALITY_PULLS, and a sequential algorithm's trials SEQUENTIAL_WORK
pulls x models; a plan never connects to an endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from gemfinder import _core
from gemfinder.cost import Cost
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.preflight import CandidateProblems, EndpointUnreachable, check_candidates
from gemfinder.search import gem_check
from gemfinder.search.gem import most_downloaded
from gemfinder.search.serving_cost import SearchCost, load_groups
from gemfinder.search.spec import SearchSpec
from gemfinder.tasks import get_task

# The evaluation cache's answers to a batch of pulls (model, item): {pull: reward} of those it
# holds (an incremental search's: search.plan_incremental.ParentAnswers).
Cached = Callable[[list[tuple[int, int]]], dict[tuple[int, int], int]]

PRESET = "qwen2.5-7b"
MIN_TREE_ITEMS = 16
MAX_CELLS = 5_000_000  # models x items of the synthetic tree (generating it: ~0.7 s, 150 MB)
MAX_PULLS = 2_000_000  # pulls replayed through the ledgers, all cost trials together
QUALITY_PULLS = 20_000_000  # pulls of the quality trials in the Rust simulator
# A sequential algorithm (UCB, UCB-E, TTTS) looks at every model for each pull: its simulation
# costs about budget x models (TTTS, the dearest: ~4.5 s for one cost and one quality trial at
# 100 million on this 2-core machine under load). The cost trials together, and the quality
# trials together, stay within it; a search above it even for one trial is refused.
SEQUENTIAL_WORK = 100_000_000
DEFAULT_TRIALS, MAX_TRIALS = 16, 64  # cost trials
QUALITY_TRIALS = 500
CHARS_PER_TOKEN = 4
ROUND_BATCH, SEQUENTIAL_BATCH = 2048, 32  # as the runner (its max_pending, sequential_batch)
TOKEN_SOURCE = (
    "prompt: characters / 4 of the prompts sent; generated: each task's max_new_tokens "
    "(an upper bound; 0 for items scored by loglikelihood)"
)


@dataclass(frozen=True)
class Spread:
    """Mean over the cost trials, and the 10th and 90th percentiles."""

    mean: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        v = np.asarray(values, dtype=float)
        return cls(float(v.mean()), float(np.percentile(v, 10)), float(np.percentile(v, 90)))

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "p10": self.p10, "p90": self.p90}


@dataclass(frozen=True)
class Plan:
    """A search's predicted spending (per cost trial) and quality (proto SearchPlan)."""

    algorithm: str
    budget: int
    models: int
    items: int  # of the synthetic tree (the query set's, unless above MAX_CELLS)
    trials: int  # cost trials
    quality_trials: int
    queries: Spread
    prompt_tokens: Spread
    generated_tokens: Spread
    model_loads: Spread
    adapter_loads: Spread
    swaps: Spread
    gpu_seconds: Spread
    load_gpu_seconds: Spread
    wall_s: Spread
    loss_mean: float  # accuracy points
    loss_p90: float
    p_best: float
    accounted: bool  # some endpoint has a cost model (else the cost figures are 0)
    token_source: str = TOKEN_SOURCE
    # A GPU-second cap (SearchSpec.gpu_seconds): the query budget it plans the search down to
    # (search.gpu_budget; `budget` without a cap or when the cap buys more), and the share of
    # cost trials it stopped before the algorithm finished (the cost figures are what the
    # search spends under it).
    planned_budget: int = 0
    gpu_seconds_cap: float | None = None
    capped: float = 0.0
    # Pulls told from the evaluation cache, not sent (an incremental search's incumbents'
    # answers from its parent): in the budget, not in `queries`, tokens or GPU-seconds.
    cached: Spread = Spread(0.0, 0.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, Spread) else value
        return out


def check_offline(
    spec: SearchSpec, configs: dict[str, EndpointConfig], prefix: str = "spec"
) -> None:
    """The pre-search check of the candidates without its probe: what the endpoint settings
    say (a backend that is not the endpoint's, an adapter it does not serve) is refused with
    the same field violations as a start; what only an answering endpoint says (the adapters
    of an endpoint whose settings list none, whether it is up) is not known to a plan."""
    known = dict(configs)
    for cand in spec.candidates:
        known.setdefault(cand.endpoint, EndpointConfig(cand.endpoint, cand.backend))
    not_probed = {c.endpoint: {"unreachable": "not probed"} for c in spec.candidates}
    try:
        check_candidates(spec.candidates, known, not_probed)
    except EndpointUnreachable:
        pass  # never probed: a plan does not connect
    except CandidateProblems as err:
        raise CandidateProblems([(f"{prefix}.{f}", r) for f, r in err.violations]) from None


def check_size(
    spec: SearchSpec, trials: int, trials_field: str = "trials", budget_field: str = "spec.budget"
) -> None:
    """What a plan refuses beyond a start's validation: the bounds of its simulation."""
    if not 1 <= trials <= MAX_TRIALS:
        raise UserError(trials_field, f"must be 1-{MAX_TRIALS}, got {trials}")
    if spec.budget > MAX_PULLS:
        raise UserError(
            budget_field,
            f"a plan simulates searches of at most {MAX_PULLS:,} queries, got {spec.budget:,}",
        )
    if spec.ask is not None:  # callers narrow it first: search.plan_incremental
        raise UserError("spec.parent_search_id", "a plan of an incremental search needs its store")
    work = _work(spec)
    if work > SEQUENTIAL_WORK:
        raise UserError(
            budget_field,
            f"a plan of {spec.algorithm}, which weighs every model at each query, simulates "
            f"at most {SEQUENTIAL_WORK:,} queries x candidates, got {work:,}",
        )


def _work(spec: SearchSpec) -> int:
    """What one simulated search costs, in pulls (x models for a sequential algorithm)."""
    if spec.epsilon is None and not spec.scheduler().round_based:
        return spec.budget * len(spec.candidates)
    return spec.budget


def _tree(spec: SearchSpec) -> tuple[np.ndarray, int]:
    """The synthetic answers, rows in the candidates' order, and the items simulated."""
    # The simulation kit, which the serving path otherwise keeps out (docs/architecture.md):
    # imported when a plan is made, not when the server starts.
    from gemfinder.sim import trees

    n = len(spec.candidates)
    items = max(2, min(len(spec.items), MAX_CELLS // n))
    # (the preset's tasks need an item each: a smaller query set takes the first columns)
    tree = trees.generate(PRESET, spec.seed, models=n, items=max(items, MIN_TREE_ITEMS))
    correct = tree.matrix.correct[:, :items]
    downloads = spec.popularity()
    if downloads is not None and tree.matrix.downloads is not None:
        # k-th most downloaded candidate <- k-th most downloaded synthetic model
        mine = np.argsort(-np.asarray(downloads), kind="stable")
        theirs = np.argsort(-np.asarray(tree.matrix.downloads), kind="stable")
        rows = np.empty(n, dtype=np.int64)
        rows[mine] = theirs
        correct = correct[rows]
    return np.ascontiguousarray(correct, dtype=np.uint8), correct.shape[1]


def _item_tokens(spec: SearchSpec, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and generated tokens of each simulated item (item j plays query item j mod n)."""
    prompt, generated = [], []
    for item in spec.items[:n_items]:
        task = get_task(item.task)
        scored = task.loglikelihood_requests(item)
        if scored:  # scored, not generated: every choice's context and continuation is read
            chars = sum(len(ctx) + len(cont) for ctx, cont in scored)
            generated.append(0)
        else:
            chars = len(task.build_prompt(item, spec.system_prompt).text)
            generated.append(task.generation_for(item).max_new_tokens)
        prompt.append(-(-chars // CHARS_PER_TOKEN))
    reps = -(-n_items // len(prompt))
    return np.tile(prompt, reps)[:n_items], np.tile(generated, reps)[:n_items]


def _scheduler(spec: SearchSpec, n_items: int, trial: int, configs: dict | None = None) -> Any:
    if spec.epsilon is not None:
        return _core.CertifiedScheduler(
            len(spec.candidates),
            n_items,
            spec.search_budget,
            spec.seed + trial,
            spec.epsilon,
            spec.delta,
            max_attempts=spec.params.get("max_attempts", 3.0),
        )
    sched = _core.Scheduler(
        spec.algorithm,
        len(spec.candidates),
        n_items,
        spec.search_budget,
        spec.seed,
        params=spec.params or None,
        priors=spec.priors(),
        popularity=spec.popularity(),
        trial=trial,
    )
    sched.set_load_groups(
        load_groups(spec.candidates, configs)
    )  # as the runner does (GPU pools too)
    return sched


def _deal(spec: SearchSpec, correct: np.ndarray, trial: int) -> np.ndarray:
    """The synthetic models as this trial's candidates. Which endpoint serves the good models is
    luck the wall time depends on (the busiest endpoint's clock), so without downloads (which
    fix the match, see _tree) each trial deals them afresh."""
    if spec.popularity() is not None:
        return correct
    return correct[np.random.default_rng([spec.seed, trial]).permutation(len(correct))]


def _cost_trial(
    spec, configs, correct, tokens, trial, cached: Cached | None = None
) -> tuple[Cost | None, int, int, int, int]:
    """One simulated search: its serving cost, queries, tokens (prompt, generated) and pulls
    told from `cached` (the runner's cache hits: no query, no cost). Under a GPU-second cap it
    stops where the runner would: before the first query that SearchCost.would_pass says takes
    the spend past the cap (then no gem check either)."""
    cost = SearchCost.of(_Configs(configs), spec.candidates, spec.gpu_seconds)
    # An incremental search reads its parent's item order (the parent's seed, trial 0), which is
    # what puts the cached answers first: every trial reads it; they differ by the deal.
    sched = _scheduler(spec, correct.shape[1], 0 if spec.incremental else trial, configs)
    correct = _deal(spec, correct, trial)
    prompt, generated = (t.tolist() for t in tokens)  # Python ints: faster per pull
    # Who saw which item, for the gem check's plan (bounded by MAX_CELLS, unlike a dict).
    seen = np.zeros(correct.shape, dtype=bool) if spec.gem_check_reserve > 0 else None
    spent = [0, 0, 0, 0]  # queries, prompt tokens, generated tokens, cache hits

    def told(asked: list[tuple[int, int]], hits: dict) -> list[tuple[int, int, bool]]:
        """The batch's grades: from the cache (as the runner's `_send`: nothing sent, whatever
        the cap), else the synthetic answers of the queries that went out."""
        out = []
        for model, item in asked:
            hit = hits.get((model, item))
            if hit is not None:
                spent[3] += 1
                out.append((model, item, bool(hit)))
            elif sent(model, item):
                out.append((model, item, bool(correct[model, item])))
        return out

    def sent(model: int, item: int) -> bool:
        """Whether the query went out (the cap may stop it, as the runner's `_send` does)."""
        cand = spec.candidates[model]
        if cost.stopped_by_cap or cost.would_pass(cand):
            cost.stopped_by_cap = True
            return False
        cost.replayed(cand)
        spent[0] += 1
        spent[1] += prompt[item]
        spent[2] += generated[item]
        if seen is not None:
            seen[model, item] = True
        return True

    # As the runner asks: a round at a time, a sequential algorithm a batch at a time (more
    # at once would blind it to the grades in between).
    batch = ROUND_BATCH if sched.round_based else SEQUENTIAL_BATCH
    while not sched.finished and not cost.stopped_by_cap:
        asked = sched.ask(batch)
        if not asked:
            break
        if cached is not None:
            sched.tell_many(told(asked, cached(asked)))
        else:  # (the common case, the fastest per pull)
            sched.tell_many([(m, i, bool(correct[m, i])) for m, i in asked if sent(m, i)])
    winner = sched.recommendation
    if winner is not None and seen is not None and not cost.stopped_by_cap:
        asked_of = [winner, *most_downloaded(spec)]
        outcomes = {
            m: {int(i): int(correct[m, i]) for i in np.flatnonzero(seen[m])} for m in asked_of
        }
        for model, items in gem_check.plan(spec, winner, outcomes).items():
            for item in items:
                if not sent(model, item):
                    break
    return cost.cost(), spent[0], int(spent[1]), int(spent[2]), spent[3]


def synthetic_answers(spec: SearchSpec) -> np.ndarray:
    """The synthetic tree's answers a plan simulates `spec` on (the candidates' rows)."""
    return _tree(spec)[0]


def replayed_spend(
    spec: SearchSpec, configs: dict[str, Any], correct: np.ndarray
) -> tuple[float, float, int]:
    """(GPU-seconds, of which loads, queries) of one simulated search of `spec` without its cap
    on `correct` (synthetic_answers; the first cost trial; `configs` keyed by URL without a
    trailing slash): gemfinder.search.gpu_budget lays a capped search's query budget out with
    it. Loads and reloads depend on the rounds' layout, hardly on the answers."""
    zeros = np.zeros(correct.shape[1], dtype=np.int64)  # tokens: not wanted here
    free = replace(spec, gpu_seconds=None)
    cost, queries, *_ = _cost_trial(free, configs, correct, (zeros, zeros), 0)
    if cost is None:
        return 0.0, 0.0, queries
    return cost.gpu_seconds, cost.load_gpu_seconds, queries


class _Configs:
    """What SearchCost.of reads of an oracle: its endpoint settings by URL."""

    def __init__(self, configs: dict[str, Any]) -> None:
        self.configs = configs


def _trials(spec: SearchSpec, wanted: int, pulls: int) -> int:
    """Trials within the bounds: `pulls` in all, SEQUENTIAL_WORK for a sequential algorithm."""
    work = _work(spec)
    bound = pulls if work == spec.budget else SEQUENTIAL_WORK
    return max(1, min(wanted, bound // max(work, 1)))


def _quality(spec: SearchSpec, correct: np.ndarray) -> tuple[int, float, float, float]:
    trials = _trials(spec, QUALITY_TRIALS, QUALITY_PULLS)
    if spec.epsilon is not None:
        picks, _, _ = _core.simulate_certified(
            correct, spec.search_budget, spec.seed, 0, trials, spec.epsilon, spec.delta
        )
    else:
        picks, _ = _core.simulate_trials(
            correct,
            spec.algorithm,
            spec.search_budget,
            spec.seed,
            0,
            trials,
            params=spec.params or None,
            priors=spec.priors(),
            popularity=spec.popularity(),
        )
    accuracy = correct.mean(axis=1)
    loss = 100.0 * (accuracy.max() - accuracy[np.asarray(picks, dtype=np.int64)])
    p_best = float(np.mean(loss <= 1e-9))
    return trials, float(loss.mean()), float(np.percentile(loss, 90)), p_best


def plan(
    spec: SearchSpec,
    configs: dict[str, Any],
    trials: int = DEFAULT_TRIALS,
    cached: Cached | None = None,
) -> Plan:
    """The plan of a validated spec; `configs`: endpoint settings by URL (their `cost`);
    `cached`: the answers its runner will find in the evaluation cache (an incremental spec,
    narrowed with them by search.plan_incremental). CPU-bound for up to seconds: callers on an
    event loop run it on a worker thread."""
    check_size(spec, trials)
    configs = {url.rstrip("/"): c for url, c in configs.items()}
    asked = spec.budget
    # The query budget the search would run with under its cap, as a start plans it (a cap
    # too small is refused here as there, naming spec.gpu_seconds). Imported here: the
    # planning of a start replays searches with this module.
    from gemfinder.search import gpu_budget

    spec = gpu_budget.planned(spec, configs)
    correct, n_items = _tree(spec)
    tokens = _item_tokens(spec, n_items)
    trials = _trials(spec, trials, MAX_PULLS)
    runs = [_cost_trial(spec, configs, correct, tokens, t, cached) for t in range(trials)]
    costs = [c or Cost() for c, *_ in runs]
    quality_trials, loss_mean, loss_p90, p_best = _quality(spec, correct)

    def spread(name: str) -> Spread:
        return Spread.of([getattr(c, name) for c in costs])

    return Plan(
        algorithm=spec.algorithm if spec.epsilon is None else "certified",
        budget=asked,
        models=len(spec.candidates),
        items=n_items,
        trials=trials,
        quality_trials=quality_trials,
        queries=Spread.of([q for _, q, *_ in runs]),
        prompt_tokens=Spread.of([p for _, _, p, _, _ in runs]),
        generated_tokens=Spread.of([g for *_, g, _ in runs]),
        model_loads=spread("model_loads"),
        adapter_loads=spread("adapter_loads"),
        swaps=spread("swaps"),
        gpu_seconds=spread("gpu_seconds"),
        load_gpu_seconds=spread("load_gpu_seconds"),
        wall_s=spread("wall_s"),
        loss_mean=loss_mean,
        loss_p90=loss_p90,
        p_best=p_best,
        accounted=runs[0][0] is not None,
        planned_budget=spec.budget,
        gpu_seconds_cap=spec.gpu_seconds,
        capped=float(np.mean([c.stopped_by_cap for c in costs])),
        cached=Spread.of([h for *_, h in runs]),
    )
