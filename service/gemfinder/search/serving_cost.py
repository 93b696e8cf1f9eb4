"""A search's serving cost as it runs: one gemfinder.cost.SlotLedger per endpoint that has a
cost model, fed every query the runner sends (cache hits cost nothing), in the order sent, and
the serving metrics fed from it."""

from __future__ import annotations

from gemfinder import metrics
from gemfinder.candidates import Candidate
from gemfinder.cost import Cost, CostModel, ModelPool, SlotLedger


class SearchCost:
    """The ledgers of a search's endpoints, keyed by URL; endpoints without a cost model are
    not accounted (`accounted` says whether any is). Feeds the serving metrics."""

    def __init__(
        self, ledgers: dict[str, SlotLedger], pools: dict[str, ModelPool] | None = None
    ) -> None:
        self._ledgers = {url.rstrip("/"): ledger for url, ledger in ledgers.items()}
        self.pools = pools or {}  # GPU pools by name (their models up: ModelPool.up)

    @classmethod
    def of(cls, oracle: object) -> SearchCost:
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
        return cls(ledgers, pools)

    @property
    def accounted(self) -> bool:
        return bool(self._ledgers)

    def sent(self, candidate: Candidate) -> float:
        """One query sent to a candidate (its endpoint's base model, or its adapter): its
        GPU-seconds (0 when the endpoint has no cost model)."""
        ledger = self._ledgers.get(candidate.endpoint.rstrip("/"))
        if ledger is None:
            return 0.0
        before = (ledger.load_seconds, ledger.model_loads, ledger.adapter_loads, ledger.swaps)
        spent = ledger.serve(candidate.adapter_id or None)
        load_s = ledger.load_seconds - before[0]
        metrics.SERVING_GPU_SECONDS.labels("query").inc(spent - load_s)
        if load_s:
            metrics.SERVING_GPU_SECONDS.labels("load").inc(load_s)
        now = (ledger.model_loads, ledger.adapter_loads, ledger.swaps)
        for kind, after, was in zip(("model", "adapter", "swap"), now, before[1:], strict=True):
            if after > was:
                metrics.SERVING_LOADS.labels(kind).inc(after - was)
        return spent

    def cost(self) -> Cost | None:
        if not self._ledgers:
            return None
        parts = [ledger.cost() for ledger in self._ledgers.values()]
        return Cost(
            gpu_seconds=sum(p.gpu_seconds for p in parts),
            load_gpu_seconds=sum(p.load_gpu_seconds for p in parts),
            queries=sum(p.queries for p in parts),
            model_loads=sum(p.model_loads for p in parts),
            adapter_loads=sum(p.adapter_loads for p in parts),
            swaps=sum(p.swaps for p in parts),
            wall_s=max(p.wall_s for p in parts),
        )

    def ledger(self, url: str) -> SlotLedger | None:
        """An endpoint's ledger (None: it has no cost model); gemfinder.search.plan replays
        simulated pulls through it."""
        return self._ledgers.get(url.rstrip("/"))


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
