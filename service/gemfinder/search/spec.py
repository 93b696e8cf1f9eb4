"""What defines a search (candidates, items, budget, algorithm, seed, prompt policy), validated.

`SearchSpec` is the domain form shared by the server, the local CLI and the store: `validate`
raises a `UserError` naming the field at fault, so every bad request becomes INVALID_ARGUMENT
with a field violation. `to_dict`/`from_dict` give the JSON the store keeps for resume.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from gemfinder import _core
from gemfinder.budget import U64_MAX, Budget, BudgetAsked, gem_check_reserve, too_small
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import url_scope
from gemfinder.samples import prompt_sha256
from gemfinder.search.values import Incremental
from gemfinder.tasks import Item, get_task, task_label


@dataclass(frozen=True)
class Limits:
    """Server-side caps on one request (configurable, see gemfinder.config)."""

    max_candidates: int = 5000
    max_items: int = 100_000
    max_budget: int = 10_000_000


# Share of the budget kept back for the gem check (search.gem_check) unless a request says
# otherwise; at most MAX_GEM_CHECK_SHARE.
GEM_CHECK_SHARE = 0.1
MAX_GEM_CHECK_SHARE = 0.5
# Weight of a candidate's prior_score, in pseudo-items (bench/studies/prior_gain.py: 5 and 20 gave
# the same ranks; at that weight the prior mostly settles ties between equal counts).
PRIOR_STRENGTH = 5.0
# What `SearchSpec.scheduler` builds: the two share the ask/tell surface the runner drives.
AnyScheduler = _core.Scheduler | _core.CertifiedScheduler
DEFAULT_DELTA = 0.05  # of a fixed-confidence search that names no delta
MAX_DELTA = 0.5


def default_algorithm(candidates: list[Candidate]) -> str:
    """The algorithm of a search that names none (chosen in docs/results.md, issue 16):
    correlated SH without a first cut; when every candidate has a prior score, `bayes_elim`,
    the same search ranking by posterior mean, so that the scores count (`sh_correlated`
    ranks by raw counts and would ignore them)."""
    if candidates and all(c.prior_score is not None for c in candidates):
        return "bayes_elim"
    return _core.DEFAULT_ALGORITHM


def spec_digest(spec: dict[str, Any]) -> str:
    """SHA-256 of a spec's canonical JSON (sorted keys): equal specs, equal digests, also after
    a round trip through the store's JSON."""
    body = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


# Simulation baselines that spend no queries (docs/search.md): a live search of one ends with
# an ungraded pick, which the failure rules refuse, so it is refused before it starts.
REFERENCE_ROWS = ("random", "best_base")


def _backends() -> list[Any]:
    from gemfinder.backends.registry import REGISTRY

    return [REGISTRY[k] for k in sorted(REGISTRY)]


@dataclass(frozen=True)
class IncrementalAsk:
    """A request for an incremental search (search.incremental): the parent's id, how many of
    its top models to keep, and the budget per newcomer (None: `SearchSpec.budget` is the
    newcomers' total). SearchManager.start turns it into the search it asks for."""

    parent_search_id: str
    incumbents: int
    per_newcomer: float | None = None


@dataclass
class SearchSpec:
    candidates: list[Candidate]
    items: list[Item]
    budget: int  # everything: the search and the gem check
    algorithm: str = ""  # "": default_algorithm(candidates)
    params: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    system_prompt: bool = False
    query_set: str | None = None  # registered name, when the items came from one
    gem_check_share: float = GEM_CHECK_SHARE
    prior_strength: float = PRIOR_STRENGTH
    # Start even when a candidate's endpoint does not answer the pre-search check (e.g. still
    # loading); off: such a search is refused (oracles.preflight.EndpointUnreachable).
    allow_unreachable: bool = False
    # Relative weight of each task of a mixed query set in the overall ranking of the result
    # (search.per_task); a task not named weighs 1. Empty: each task weighs its share of the
    # items, which makes the overall ranking's accuracies the plain ones.
    task_weights: dict[str, float] = field(default_factory=dict)
    # An incremental search as asked (candidates: the current tree), before the manager narrows
    # it; then `incremental` says what it was narrowed to.
    ask: IncrementalAsk | None = None
    incremental: Incremental | None = None
    # Fixed confidence (docs/search.md): stop once the winner is certified within `epsilon`
    # (a share of accuracy) of every model with probability 1 - `delta`; `budget` is then the
    # most the search may spend. None: a fixed-budget search.
    epsilon: float | None = None
    delta: float = DEFAULT_DELTA
    # A cap in GPU-seconds (queries and loads, from the endpoints' cost models and measured
    # service times; search.gpu_budget): the query budget is planned down to what it buys, and
    # the search stops sending once the next query would pass it. None: no cap.
    gpu_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.algorithm:
            self.algorithm = default_algorithm(self.candidates)

    @property
    def exhaustive(self) -> int:
        return len(self.candidates) * len(self.items)

    @property
    def gem_check_reserve(self) -> int:
        """Queries kept back for the gem check: none without downloads (no popular models)."""
        if self.popularity() is None:
            return 0
        return gem_check_reserve(self.budget, self.gem_check_share)

    @property
    def search_budget(self) -> int:
        return self.budget - self.gem_check_reserve

    def popularity(self) -> list[float] | None:
        if all(c.downloads is None for c in self.candidates):
            return None
        return [c.downloads or 0.0 for c in self.candidates]

    def priors(self) -> list[tuple[float, float]] | None:
        """Beta priors from the candidates' prior scores (all or none have one), worth
        `prior_strength` items each; gem search and bayes_elim rank by posterior mean with them."""
        scores = [c.prior_score for c in self.candidates]
        if any(s is None for s in scores):
            return None
        n0 = self.prior_strength
        return [(1.0 + n0 * s, 1.0 + n0 * (1.0 - s)) for s in scores if s is not None]

    def task_items(self) -> dict[str, int]:
        """{task: items of the query set}, by task name (tasks.task_label)."""
        counts: dict[str, int] = {}
        for item in self.items:
            label = task_label(item)
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    def task_shares(self) -> dict[str, float]:
        """Each task's weight in the overall ranking, normalised to sum to 1 (see task_weights)."""
        counts = self.task_items()
        if not self.task_weights:
            total = sum(counts.values())
            return {t: n / total for t, n in counts.items()}
        raw = {t: float(self.task_weights.get(t, 1.0)) for t in counts}
        total = sum(raw.values())
        return {t: w / total for t, w in raw.items()}

    def scheduler(self) -> AnyScheduler:
        if self.epsilon is not None:
            return _core.CertifiedScheduler(
                len(self.candidates),
                len(self.items),
                self.search_budget,
                self.seed,
                self.epsilon,
                self.delta,
                max_attempts=self.params.get("max_attempts", 3.0),
            )
        return _core.Scheduler(
            self.algorithm,
            len(self.candidates),
            len(self.items),
            self.search_budget,
            self.seed,
            params=self.params or None,
            priors=self.priors(),
            popularity=self.popularity(),
        )

    def validate(
        self, limits: Limits = Limits(), prefix: str = "spec", asked: BudgetAsked | None = None
    ) -> None:
        """Raise UserError(field, reason) for the first problem; builds a throwaway scheduler.
        `asked`: how the caller gave the budget, so that budget errors speak of that number and
        name that field (default: a total in `{prefix}.budget`)."""
        asked = asked or BudgetAsked(f"{prefix}.budget")
        n = len(self.candidates)
        if n < 2:
            raise UserError(f"{prefix}.candidates", "need at least 2 candidates")
        if n > limits.max_candidates:
            raise UserError(f"{prefix}.candidates", f"at most {limits.max_candidates} candidates")
        seen: dict[str, int] = {}
        served: dict[tuple[str, str | None], int] = {}
        for i, cand in enumerate(self.candidates):
            if cand.model_id in seen:
                raise UserError(
                    f"{prefix}.candidates[{i}].model_id",
                    f"duplicate of candidates[{seen[cand.model_id]}]",
                )
            seen[cand.model_id] = i
            where = (cand.endpoint, cand.adapter_id)
            if where in served:
                # Two names for one served model would split its evidence and waste budget.
                first = self.candidates[served[where]].model_id
                what = "adapter" if cand.adapter_id is not None else "base model (no adapter_id)"
                raise UserError(
                    f"{prefix}.candidates[{i}].adapter_id",
                    f"{cand.model_id}: candidates[{served[where]}] ({first}) already names this "
                    f"endpoint and {what}: two names for one served model",
                )
            served[where] = i
            for name in ("downloads", "prior_score"):
                value = getattr(cand, name)
                if value is not None and (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                ):
                    raise UserError(
                        f"{prefix}.candidates[{i}].{name}", f"must be a finite number, got {value}"
                    )
        if not self.items:
            raise UserError(f"{prefix}.query_set", "no items")
        if len(self.items) > limits.max_items:
            raise UserError(f"{prefix}.query_set", f"at most {limits.max_items} items")
        self._check_loglikelihood_backends(prefix)
        self._check_task_weights(prefix)
        Budget(self.budget, asked).check_range(n, limits.max_budget)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"{prefix}.seed", f"must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= U64_MAX:  # the core's seed is a u64
            raise UserError(f"{prefix}.seed", f"must be between 0 and 2^64 - 1, got {self.seed}")
        for name in ("system_prompt", "allow_unreachable"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(
                    f"{prefix}.{name}", f"must be true or false, got {getattr(self, name)!r}"
                )
        scored = [c.prior_score is not None for c in self.candidates]
        if any(scored) and not all(scored):
            i = scored.index(False)
            raise UserError(
                f"{prefix}.candidates[{i}].prior_score",
                "missing: give a prior score to every candidate or to none",
            )
        if not 0.0 < self.prior_strength <= 1000.0:
            raise UserError(
                f"{prefix}.prior_strength",
                f"must be above 0 and at most 1000 items, got {self.prior_strength}",
            )
        if not 0.0 <= self.gem_check_share <= MAX_GEM_CHECK_SHARE:
            raise UserError(
                f"{prefix}.gem_check_share",
                f"must be between 0 and {MAX_GEM_CHECK_SHARE}, got {self.gem_check_share}",
            )
        self._check_target(prefix)
        if self.gpu_seconds is not None and (
            isinstance(self.gpu_seconds, bool)
            or not isinstance(self.gpu_seconds, int | float)
            or not math.isfinite(self.gpu_seconds)
            or self.gpu_seconds <= 0
        ):
            raise UserError(
                f"{prefix}.gpu_seconds",
                f"must be a number of seconds above 0, got {self.gpu_seconds!r}",
            )
        if self.algorithm in REFERENCE_ROWS:
            raise UserError(
                f"{prefix}.algorithm",
                f"{self.algorithm!r} is a reference row of `gemfinder simulate`: it picks without "
                "asking any model, so a live search could not grade its pick; choose one of "
                + ", ".join(a for a in _core.ALGORITHMS if a not in REFERENCE_ROWS),
            )
        try:
            self.scheduler()
        except _core.SearchError as err:
            if err.kind == "budget_too_small":  # the core saw only the search's share
                share = 0.0 if self.popularity() is None else self.gem_check_share
                raise too_small(
                    asked, self.budget, n, self.gem_check_reserve, share, self.algorithm,
                    err.needed, err.why,
                ) from None  # fmt: skip
            name = err.field or "algorithm"
            raise UserError(f"{prefix}.{name}", err.reason) from None

    def _check_task_weights(self, prefix: str) -> None:
        if not isinstance(self.task_weights, dict):
            raise UserError(f"{prefix}.task_weights", "must be a map of task name to weight")
        if not self.task_weights:
            return
        counts = self.task_items()
        for task, weight in sorted(self.task_weights.items()):  # the same error every time
            where = f"{prefix}.task_weights[{task}]"
            if task not in counts:
                raise UserError(
                    where, f"no item of the query set has task {task!r} (tasks: "
                    + ", ".join(counts) + ")",
                )  # fmt: skip
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise UserError(where, f"must be a finite number >= 0, got {weight!r}")
        if not any(self.task_weights.get(t, 1.0) > 0 for t in counts):
            first = next(iter(sorted(self.task_weights)))
            raise UserError(
                f"{prefix}.task_weights[{first}]",
                "every task weighs 0: give at least one task a weight above 0",
            )

    def _check_target(self, prefix: str) -> None:
        """Fixed confidence: epsilon in (0, 1], delta in (0, 0.5]; the search is the certified
        elimination, which takes no algorithm parameters but `max_attempts`."""
        for name, top in (("epsilon", 1.0), ("delta", MAX_DELTA)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{prefix}.{name}", f"must be a number, got {value!r}")
            if not 0.0 < value <= top:  # NaN fails too
                reason = f"must be above 0 and at most {top}, got {value}"
                raise UserError(f"{prefix}.{name}", reason)
        if self.epsilon is not None:
            extra = sorted(set(self.params) - {"max_attempts"})
            if extra:
                raise UserError(
                    f"{prefix}.params.{extra[0]}",
                    "a fixed-confidence search (epsilon set) runs certified elimination, which "
                    "takes no algorithm parameters but max_attempts",
                )

    def _check_loglikelihood_backends(self, prefix: str) -> None:
        """Items scored from log-likelihoods (lm_eval multiple_choice) need a backend that
        returns them: a chat endpoint cannot, so the search is refused before any query."""
        from gemfinder.backends.registry import backend

        scored = next(
            (it for it in self.items if get_task(it.task).loglikelihood_requests(it)), None
        )
        if scored is None:
            return
        for i, cand in enumerate(self.candidates):
            b = backend(cand.backend)
            if b.loglikelihood is None:
                able = ", ".join(x.enum_name for x in _backends() if x.loglikelihood is not None)
                raise UserError(
                    f"{prefix}.candidates[{i}].backend",
                    f"candidate {cand.model_id!r} is served by {b.enum_name} ({b.route}), which "
                    f"returns no log-likelihoods, and item {scored.id!r} is a multiple-choice "
                    f"lm_eval item scored from them; serve it through {able}",
                )

    def digest(self) -> str:
        """Equal specs, equal digests: a request id names one spec (SearchManager.start)."""
        return spec_digest(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        data = {
            "candidates": [asdict(c) for c in self.candidates],
            "items": [{"id": it.id, "task": it.task, "fields": it.fields} for it in self.items],
            "budget": self.budget,
            "algorithm": self.algorithm,
            "params": self.params,
            "seed": self.seed,
            "system_prompt": self.system_prompt,
            "query_set": self.query_set,
            "gem_check_share": self.gem_check_share,
            "prior_strength": self.prior_strength,
        }
        if self.allow_unreachable:  # only when set: digests of older specs stay as they were
            data["allow_unreachable"] = True
        if self.task_weights:  # likewise
            data["task_weights"] = dict(sorted(self.task_weights.items()))
        if self.ask is not None:
            data["incremental_ask"] = asdict(self.ask)
        if self.incremental is not None:
            data["incremental"] = self.incremental.to_json()
        if self.epsilon is not None:  # likewise
            data["epsilon"], data["delta"] = self.epsilon, self.delta
        if self.gpu_seconds is not None:  # likewise
            data["gpu_seconds"] = self.gpu_seconds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpec:
        return cls(
            candidates=[Candidate(**c) for c in data["candidates"]],
            items=[Item(it["id"], it["task"], it["fields"]) for it in data["items"]],
            budget=data["budget"],
            algorithm=data["algorithm"],
            params=data["params"],
            seed=data["seed"],
            system_prompt=data["system_prompt"],
            query_set=data.get("query_set"),
            # Searches stored before the gem check existed resume with their whole budget.
            gem_check_share=data.get("gem_check_share", 0.0),
            prior_strength=data.get("prior_strength", PRIOR_STRENGTH),
            allow_unreachable=data.get("allow_unreachable", False),
            task_weights=data.get("task_weights", {}),
            ask=IncrementalAsk(**data["incremental_ask"]) if "incremental_ask" in data else None,
            incremental=Incremental.from_json(data["incremental"])
            if "incremental" in data
            else None,
            epsilon=data.get("epsilon"),
            delta=data.get("delta", DEFAULT_DELTA),
            gpu_seconds=data.get("gpu_seconds"),
        )


class CacheKeys:
    """Evaluation-cache keys: what produced an answer and what was asked.

    Producer: the endpoint's cache scope (`scope(url)`: the operator's `cache_group`, else the
    URL; oracles.endpoints.EndpointConfig.cache_scope), backend, model id and adapter. Question:
    the item's content (what grading reads), the prompt as sent (both shapes, so a changed
    template or prompt variant is a new question), the decoding settings, and the task's
    grader version (a changed grader must not be served the old grader's 0/1). The endpoint is
    part of the key because a model id is only a name: any caller may put any model behind an
    endpoint of their own and name a real model id, and their answers must not decide another
    caller's search. Endpoints share answers only when the operator grouped them.
    """

    def __init__(self, spec: SearchSpec, scope: Callable[[str], str] = url_scope) -> None:
        # Each item's prompt hash too (the samples log's), from the prompt built once here.
        self.prompt_hashes: list[str] = []
        self._items = [self._item_part(it, spec.system_prompt) for it in spec.items]
        self._models = [
            json.dumps([scope(c.endpoint), c.backend, c.model_id, c.adapter_id or ""])
            for c in spec.candidates
        ]

    def _item_part(self, item: Item, system_prompt: bool) -> str:
        task = get_task(item.task)
        gen = task.generation_for(item)
        prompt = task.build_prompt(item, system_prompt)
        self.prompt_hashes.append(prompt_sha256(prompt, task.loglikelihood_requests(item)))
        body = json.dumps(
            [item.id, item.task, item.fields, prompt.text, prompt.messages],
            sort_keys=True,
            default=str,
        )
        decoding = [gen.max_new_tokens, list(gen.stop), "greedy"]
        digest = hashlib.sha256(body.encode()).hexdigest()
        return json.dumps([digest, decoding, task.grader_version])

    def __call__(self, model: int, item: int) -> str:
        raw = f"{self._models[model]}|{self._items[item]}"
        return hashlib.sha256(raw.encode()).hexdigest()
