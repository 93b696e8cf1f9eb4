"""A search's serving cost as it runs: one gemfinder.cost.SlotLedger per endpoint that has a
cost model, fed every query the runner sends (cache hits cost nothing), in the order sent, and
the serving metrics fed from it.

Measured query times: an endpoint whose cost block gives no `query_s` has each answered query's
service time (OracleResult.service_s, the successful request's round trip) added when the
answer arrives; until then a query in flight there is reserved at the endpoint's mean so far,
so that a GPU-second cap (SearchSpec.gpu_seconds, `would_pass`) counts it. With a cap every
endpoint of the search is accounted: one without a cost block has its query time measured and
no loads. The ledgers' state is what a resumed search continues from (`state`/`restore`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gemfinder import metrics
from gemfinder.candidates import Candidate
from gemfinder.cost import Cost, CostModel, EndpointCost, ModelPool, SlotLedger


class SearchCost:
    """The ledgers of a search's endpoints, keyed by URL; endpoints without a cost model are
    not accounted (`accounted` says whether any is). Feeds the serving metrics."""

    def __init__(
        self,
        ledgers: dict[str, SlotLedger],
        pools: dict[str, ModelPool] | None = None,
        cap: float | None = None,
    ) -> None:
        self._ledgers = {url.rstrip("/"): ledger for url, ledger in ledgers.items()}
        self.pools = pools or {}  # GPU pools by name (their models up: ModelPool.up)
        self.cap = cap  # GPU-seconds (SearchSpec.gpu_seconds), None: no cap
        self.stopped_by_cap = False
        # Queries sent and not answered yet, per endpoint: reserved at an estimate where query
        # time is measured, and stored with the ledger so that a resume, which sends them
        # again, does not count them twice (`changed`, `restore`).
        self._in_flight: dict[str, int] = {}
        self._total = sum(ledger.gpu_seconds for ledger in self._ledgers.values())
        self._largest_mean = 0.0  # of the measured query times, over all endpoints so far
        self._dirty: set[str] = set()  # endpoints changed since `changed` last said

    @classmethod
    def of(
        cls, oracle: object, candidates: Iterable[Candidate] = (), cap: float | None = None
    ) -> SearchCost:
        """From the cost models of an oracle's endpoint settings (none for other oracles). The
        adapters an endpoint was launched with are in host memory from the start: all of them
        on TGI (LORA_ADAPTERS), the last `max_cpu_loras` on vLLM (--lora-modules, read in
        order into its LRU cache). Endpoints of one GPU pool share its ModelPool: at most its
        slots of their models are up at once."""
        ledgers, pools = {}, {}
        for url, config in getattr(oracle, "configs", {}).items():
            model: CostModel | None = getattr(config, "cost", None)
            if model is None:
                continue
            launched = list(config.adapters or ())
            capacity = model.cpu_capacity
            if config.backend == "tgi":
                capacity = max(capacity, len(launched))
            spec = getattr(config, "gpu_pool", None)
            pool = None if spec is None else pools.setdefault(spec.name, ModelPool(spec))
            ledgers[url] = SlotLedger(model, launched, cpu_capacity=capacity, pool=pool)
        if cap is not None:  # a cap needs every endpoint's spend: query time measured
            known = {url.rstrip("/") for url in ledgers}
            for cand in candidates:
                url = cand.endpoint.rstrip("/")
                if url not in known:
                    known.add(url)
                    ledgers[url] = SlotLedger(CostModel(measure_query=True))
        return cls(ledgers, pools, cap)

    @property
    def accounted(self) -> bool:
        return bool(self._ledgers)

    def sent(self, candidate: Candidate) -> float:
        """One query sent to a candidate (its endpoint's base model, or its adapter): its
        GPU-seconds (0 when the endpoint has no cost model)."""
        url = candidate.endpoint.rstrip("/")
        ledger = self._ledgers.get(url)
        if ledger is None:
            return 0.0
        self._in_flight[url] = self._in_flight.get(url, 0) + 1
        self._dirty.add(url)
        before = (ledger.load_seconds, ledger.model_loads, ledger.adapter_loads, ledger.swaps)
        spent = ledger.serve(candidate.adapter_id or None)
        self._total += spent
        load_s = ledger.load_seconds - before[0]
        # max: float rounding leaves a query time of 0 (measured later) a hair below it.
        metrics.SERVING_GPU_SECONDS.labels("query").inc(max(spent - load_s, 0.0))
        if load_s:
            metrics.SERVING_GPU_SECONDS.labels("load").inc(load_s)
        now = (ledger.model_loads, ledger.adapter_loads, ledger.swaps)
        for kind, after, was in zip(("model", "adapter", "swap"), now, before[1:], strict=True):
            if after > was:
                metrics.SERVING_LOADS.labels(kind).inc(after - was)
        return spent

    def replayed(self, candidate: Candidate) -> float:
        """A simulated query (gemfinder.search.plan replays a search through these ledgers):
        accounted as `sent` accounts it and answered at once; the serving metrics count only
        queries really sent."""
        ledger = self._ledgers.get(candidate.endpoint.rstrip("/"))
        if ledger is None:
            return 0.0
        spent = ledger.serve(candidate.adapter_id or None)
        self._total += spent
        return spent

    def answered(self, candidate: Candidate, service_s: float | None) -> None:
        """A query sent to `candidate` came back (answered or failed): on an endpoint whose
        query time is measured, its measured service time is added (None: a failure, whose
        time is not counted; docs/service.md "Serving cost")."""
        url = candidate.endpoint.rstrip("/")
        ledger = self._ledgers.get(url)
        if ledger is None:
            return
        left = self._in_flight.get(url, 0) - 1
        if left > 0:
            self._in_flight[url] = left
        else:
            self._in_flight.pop(url, None)
        self._dirty.add(url)
        if ledger.model.measure_query and service_s is not None and service_s >= 0.0:
            ledger.measured(service_s)
            self._total += service_s
            self._largest_mean = max(self._largest_mean, ledger.query_s)
            metrics.SERVING_GPU_SECONDS.labels("query").inc(service_s)

    def _estimate(self, ledger: SlotLedger) -> float:
        """A measured endpoint's next query: its mean so far, else the largest mean measured
        at any endpoint so far (0 before the first answer anywhere)."""
        return ledger.query_s if ledger.measured_queries else self._largest_mean

    @property
    def accounted_s(self) -> float:
        """GPU-seconds spent so far: accounted at send, measured at answer."""
        return self._total

    @property
    def spent(self) -> float:
        """GPU-seconds spent: accounted, measured, and queries in flight at their estimate
        (a sum over the endpoints with queries in flight only: checked before every query)."""
        reserved = sum(
            n * self._estimate(self._ledgers[url])
            for url, n in self._in_flight.items()
            if self._ledgers[url].model.measure_query
        )
        return self._total + reserved

    def would_pass(self, candidate: Candidate) -> bool:
        """Whether sending one more query to `candidate` would take the spend past the cap
        (then the runner stops: `stopped_by_cap`)."""
        if self.cap is None:
            return False
        ledger = self._ledgers.get(candidate.endpoint.rstrip("/"))
        if ledger is None:
            return False
        adapter = candidate.adapter_id or None
        extra = ledger.would_cost(adapter)
        if ledger.model.measure_query:
            extra += self._estimate(ledger)
        return self.spent + extra > self.cap

    def changed(self) -> dict[str, Any]:
        """What the store keeps for a resume, of the endpoints changed since the last call:
        {endpoint: its ledger's caches and counters, and the queries in flight} (search.runner
        saves it)."""
        out = {
            url: {**self._ledgers[url].state(), "in_flight": self._in_flight.get(url, 0)}
            for url in sorted(self._dirty)
        }
        self._dirty.clear()
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a stored state (an endpoint no longer configured is left out). The
        queries in flight then are taken back: their answers were lost with the process, and
        the resumed search sends them again (their loads stay counted: the endpoint did them)."""
        for url, data in state.items():
            ledger = self._ledgers.get(url)
            if ledger is not None and isinstance(data, dict):
                ledger.restore(data)
                ledger.take_back(int(data.get("in_flight", 0)))
                self._largest_mean = max(self._largest_mean, ledger.query_s)
        self._total = sum(ledger.gpu_seconds for ledger in self._ledgers.values())

    def cost(self) -> Cost | None:
        if not self._ledgers:
            return None
        parts = [ledger.cost() for ledger in self._ledgers.values()]
        used = [(url, led) for url, led in self._ledgers.items() if led.queries]
        return Cost(
            gpu_seconds=sum(p.gpu_seconds for p in parts),
            load_gpu_seconds=sum(p.load_gpu_seconds for p in parts),
            queries=sum(p.queries for p in parts),
            model_loads=sum(p.model_loads for p in parts),
            adapter_loads=sum(p.adapter_loads for p in parts),
            swaps=sum(p.swaps for p in parts),
            wall_s=max(p.wall_s for p in parts),
            endpoints=tuple(
                EndpointCost(
                    url=url,
                    gpu_seconds=led.gpu_seconds,
                    queries=led.queries,
                    query_s=led.query_s,
                    query_s_measured=led.model.measure_query,
                    measured_queries=led.measured_queries,
                )
                for url, led in used
            ),
            gpu_seconds_cap=self.cap,
            stopped_by_cap=self.stopped_by_cap,
        )

    def ledger(self, url: str) -> SlotLedger | None:
        """An endpoint's ledger (None: it has no cost model); gemfinder.search.plan replays
        simulated pulls through it."""
        return self._ledgers.get(url.rstrip("/"))


def pool_slots(candidates: list[Candidate], configs: dict | None = None) -> list[tuple[str, int]]:
    """Each candidate's GPU pool (`configs`: the operator's settings by URL) as (name, slots),
    ("", 0) for a candidate on no pool: the runner keeps at most `slots` of a pool's models in
    flight at once (search.runner `_take`)."""
    out = []
    for c in candidates:
        pool = getattr((configs or {}).get(c.endpoint.rstrip("/")), "gpu_pool", None)
        out.append((pool.name, pool.slots) if pool else ("", 0))
    return out


def load_groups(candidates: list[Candidate], configs: dict | None = None) -> list[int]:
    """Each candidate's endpoint as a number, for the core's load-aware round order (models on
    one endpoint share its slots; core_rs/src/scheduler/load_order.rs). Endpoints of one GPU
    pool (`configs`: the operator's settings by URL) are one group: their models share the
    pool's slots, so a round serves them one after another rather than in turns, which would
    bring them up and down once per pull."""
    ids: dict[str, int] = {}
    out = []
    for c in candidates:
        url = c.endpoint.rstrip("/")
        pool = getattr((configs or {}).get(url), "gpu_pool", None)
        out.append(ids.setdefault(f"pool:{pool.name}" if pool else f"url:{url}", len(ids)))
    return out
