"""What a search reports: its progress, its result and each model's estimate, as typed values.

One shape from the runner to the caller: the runner builds these (search.result), the store
keeps their JSON (`to_json`/`from_json`), the server sends them as messages
(server.convert: `*_to_proto`/`*_from_proto`), the CLI prints them (report, `--json`).

Frozen dataclasses, not the proto messages themselves, because the two forms differ on purpose
and the stored one must not move: the JSON in existing databases (and `gemfinder search --json`)
counts time in seconds (`elapsed_s`, the proto a Duration), names the gem verdict by its short
name (`hidden_gem`, the proto an enum number), writes an unknown download count as null (the
proto tracks presence with HasField); proto3's own JSON mapping would rename every key and
write int64 as strings. Dataclasses also keep the search, the simulator and the CLI free of
generated gRPC code: only server/ speaks proto.

Every number is finite (strict JSON): `from_json` reads results stored before that rule (an
unseen model's accuracy was NaN) as 0, and fields stored before they existed (the gem verdict,
its evidence, the gem check's queries, `official`, the per-task results) as the proto's
defaults.
Estimates and results take any field as missing for that reason; only an estimate's
`model_id` is required.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, TypeVar

from gemfinder.cost import Cost

T = TypeVar("T")


@dataclass(frozen=True)
class Estimate:
    """One model's estimate (proto ModelEstimate)."""

    model_id: str
    rank: int = 0
    accuracy: float = 0.0  # 0 when unseen (items_seen 0)
    lower: float = 0.0
    upper: float = 0.0
    items_seen: int = 0
    successes: int = 0
    eliminated_in_round: int = 0  # 1-based; 0: never eliminated
    downloads: float | None = None
    official: bool = False

    def to_json(self) -> dict[str, Any]:
        # Not asdict, which deep-copies field by field: a result holds up to 7 estimates per
        # model (ranking, overall, per task), 7,000 at 1,000 models, and asdict made storing
        # and sending one take tens of ms of the event loop. Every field is a scalar.
        return {name: getattr(self, name) for name in _names(Estimate)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Estimate:
        return _known(cls, data)


@dataclass(frozen=True)
class Paired:
    """The winner against one popular model on the items both were graded on (proto
    PairedComparison; search.gem)."""

    model_id: str
    shared_items: int
    winner_only_correct: int  # items the winner got right and the popular model wrong
    other_only_correct: int  # the reverse
    p_value: float  # one-sided sign test of "the winner is better"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Paired:
        return _known(cls, data)


@dataclass(frozen=True)
class TaskResult:
    """One task of a mixed query set (proto TaskResult; search.per_task says how it is
    computed): its weight in the overall ranking (the caller's task_weights normalised to sum
    to 1 over the tasks, or its share of the items), its items in the query set, and the
    models graded on at least one of them, ranked on those items alone."""

    task: str
    weight: float = 0.0
    items: int = 0
    estimates: tuple[Estimate, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "weight": self.weight,
            "items": self.items,
            "estimates": [e.to_json() for e in self.estimates],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskResult:
        estimates = tuple(Estimate.from_json(e) for e in data.get("estimates", ()))
        return _known(cls, data | {"estimates": estimates})


@dataclass(frozen=True)
class Certificate:
    """The winner is within `epsilon_reached` of every model with probability at least
    1 - `delta` (proto Certificate; docs/search.md, "Fixed confidence and the certificate").
    `epsilon` is the target of a fixed-confidence search, None for a fixed-budget one;
    `certified`: epsilon_reached <= epsilon."""

    epsilon_reached: float = 1.0
    delta: float = 0.0
    epsilon: float | None = None
    certified: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Certificate:
        return _known(cls, data)


@dataclass(frozen=True)
class Progress:
    """A running search's counters (proto Progress); all 0 before the first."""

    budget: int = 0  # everything: the search and the gem check
    spent: int = 0  # the gem check's answers included
    failed: int = 0
    skipped: int = 0
    cached: int = 0
    round: int = 0  # 1-based; 0 for algorithms without rounds
    total_rounds: int = 0
    survivors: int = 0
    leader_model_id: str = ""
    leader_accuracy: float = 0.0
    elapsed_s: float = 0.0
    certificate: Certificate | None = None  # fixed-confidence searches: the current one
    # GPU-seconds spent so far (search.serving_cost), None when nothing is accounted; the
    # search's GPU-second cap, None without one.
    gpu_seconds: float | None = None
    gpu_seconds_cap: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("certificate", "gpu_seconds", "gpu_seconds_cap"):
            if data[name] is None:  # absent, so that older progress stores as it was
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        cert = data.get("certificate")
        return _known(cls, data | {"certificate": _certificate(cert)})


@dataclass(frozen=True)
class Incremental:
    """How an incremental search relates to its parent (proto IncrementalOutcome;
    search.incremental). `known`: every model id the lineage has listed (the parent's, its own
    parent's, and this search's current tree), so that a model left out once is not taken for
    a newcomer by the next search in the chain; stored, not sent."""

    parent_search_id: str
    parent_winner_model_id: str = ""
    winner_changed: bool = False  # set in the result
    incumbents: tuple[str, ...] = ()
    newcomers: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    left_out: int = 0
    known: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incremental:
        lists = {k: tuple(data.get(k, ())) for k in ("incumbents", "newcomers", "removed", "known")}
        return _known(cls, data | lists)


@dataclass(frozen=True)
class Result:
    """A finished (or cancelled) search (proto SearchResult; search.result says how each field
    is computed). `gem_verdict` is one of search.gem's names, "" for results stored before
    verdicts existed."""

    recommended_model_id: str = ""
    ranking: tuple[Estimate, ...] = ()
    queries_spent: int = 0  # the gem check's included
    queries_failed: int = 0
    queries_cached: int = 0
    exhaustive_queries: int = 0
    elapsed_s: float = 0.0
    winner: Estimate = Estimate("")
    most_popular: Estimate | None = None  # None without downloads
    hidden_gem: bool = False
    gem_verdict: str = ""
    gem_evidence: tuple[Paired, ...] = ()
    gem_check_queries: int = 0
    # What serving it cost (gemfinder.cost); None when no endpoint has a cost model.
    cost: Cost | None = None
    # Mixed query sets only (two tasks or more; empty otherwise): one TaskResult per task, by
    # task name, and every model ranked on its task-weighted accuracy (search.per_task).
    per_task: tuple[TaskResult, ...] = ()
    overall: tuple[Estimate, ...] = ()
    incremental: Incremental | None = None  # set for an incremental search
    certificate: Certificate | None = None  # None: stored before certificates, or `sh`

    def to_json(self) -> dict[str, Any]:
        """The JSON the store keeps (and `gemfinder search --json` prints), keys in this order;
        `incremental` only for an incremental search, `per_task` and `overall` only for a mixed
        query set, `certificate` only when there is one, so that other results are stored as
        before."""
        extra = {} if self.incremental is None else {"incremental": self.incremental.to_json()}
        out = {
            "recommended_model_id": self.recommended_model_id,
            "ranking": [e.to_json() for e in self.ranking],
            "queries_spent": self.queries_spent,
            "queries_failed": self.queries_failed,
            "queries_cached": self.queries_cached,
            "exhaustive_queries": self.exhaustive_queries,
            "elapsed_s": self.elapsed_s,
            "winner": self.winner.to_json(),
            "most_popular": None if self.most_popular is None else self.most_popular.to_json(),
            "hidden_gem": self.hidden_gem,
            "gem_verdict": self.gem_verdict,
            "gem_evidence": [p.to_json() for p in self.gem_evidence],
            "gem_check_queries": self.gem_check_queries,
            **({} if self.cost is None else {"cost": self.cost.to_json()}),
            **extra,
        }
        if self.per_task or self.overall:
            out["per_task"] = [t.to_json() for t in self.per_task]
            out["overall"] = [e.to_json() for e in self.overall]
        if self.certificate is not None:
            out["certificate"] = self.certificate.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        popular = data.get("most_popular")
        nested = {
            "winner": Estimate.from_json(data.get("winner", {"model_id": ""})),
            "ranking": tuple(Estimate.from_json(e) for e in data.get("ranking", ())),
            "most_popular": None if popular is None else Estimate.from_json(popular),
            "gem_evidence": tuple(Paired.from_json(p) for p in data.get("gem_evidence", ())),
            "cost": None if data.get("cost") is None else Cost.from_json(data["cost"]),
            "per_task": tuple(TaskResult.from_json(t) for t in data.get("per_task", ())),
            "overall": tuple(Estimate.from_json(e) for e in data.get("overall", ())),
            "incremental": None
            if data.get("incremental") is None
            else Incremental.from_json(data["incremental"]),
            "certificate": _certificate(data.get("certificate")),
        }
        return _known(cls, data | nested)


def _certificate(data: dict[str, Any] | None) -> Certificate | None:
    return None if data is None else Certificate.from_json(data)


@cache
def _names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass, looked up once (`fields` costs a few µs a call, which
    7,000 estimates per stored result multiply)."""
    return tuple(f.name for f in fields(cls))


def _known(cls: type[T], data: dict[str, Any]) -> T:
    """`cls` from the keys of `data` it has (missing ones take their defaults; a key written by
    a later version is left out), non-finite floats as 0."""
    names = _known_names(cls)
    # _finite inlined: this runs for every value of every estimate read back from the store.
    return cls(
        **{
            k: 0.0 if type(v) is float and not math.isfinite(v) else v
            for k, v in data.items()
            if k in names
        }
    )


@cache
def _known_names(cls: type) -> frozenset[str]:
    return frozenset(_names(cls))
