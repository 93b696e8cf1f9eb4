"""What a search costs to serve: model loads, adapter loads, GPU slots, GPU-seconds, wall time.

A query is not what a platform pays for: before a model answers it must be up, and an adapter
must be in host memory and in a GPU slot. The cost model of an endpoint (`cost` in the
endpoints file, docs/service.md "Serving cost") gives the seconds of each step; `SlotLedger`
replays the queries sent to that endpoint in order through the same caches vLLM keeps (the LRU
host-memory cache of `max_cpu_loras` adapters and `max_loras` GPU slots of
vllm/lora/worker_manager.py) and adds up GPU-seconds; gemfinder.search.serving_cost does so for
every endpoint of a search. The simulated fleet runs the same ledger on its virtual clock
(gemfinder.sim.fleet.serving), so what a search accounts and what the fleet measured agree
when the cost model is the fleet's.

Full-model endpoints that share GPUs name one `gpu_pool` (GpuPool): their ledgers share a
ModelPool, which keeps at most its `slots` models up at once, least recently used taken down.

Accounted, not measured: queries on one endpoint are counted one after another (no batching),
so GPU-seconds are an upper bound of a batching server's; wall time is the busiest endpoint's
clock (endpoints run in parallel). One figure may be measured instead: a cost block without
`query_s` (`CostModel.measure_query`) has each answered query's service time, as the search
timed the endpoint's response, added when the answer arrives (`SlotLedger.measured`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from gemfinder.errors import UserError

_SECONDS = ("model_load_s", "adapter_load_s", "swap_s", "query_s")
KEYS = {*_SECONDS, "max_loras", "max_cpu_loras"}


@dataclass(frozen=True)
class CostModel:
    """One endpoint's serving costs. max_cpu_loras None = max_loras, as vLLM defaults it."""

    model_load_s: float = 0.0  # bringing the base model up, once
    adapter_load_s: float = 0.0  # reading an adapter into host memory (again after eviction)
    swap_s: float = 0.0  # moving a host-memory adapter into a GPU slot
    query_s: float = 0.0  # GPU time of one query
    max_loras: int = 1  # GPU slots (vLLM's --max-loras)
    max_cpu_loras: int | None = None  # host-memory cache (vLLM's --max-cpu-loras)
    # The cost block gave no query_s: each query's service time is measured from its response
    # (gemfinder.search.serving_cost) and query_s stays 0 in the accounting at send time.
    measure_query: bool = False

    @property
    def cpu_capacity(self) -> int:
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras

    def to_json(self) -> dict[str, Any]:
        """The endpoints file's `cost` block (max_cpu_loras left out when not set)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measure_query"}
        if self.measure_query:  # as it was given: without query_s
            del out["query_s"]
        return {k: v for k, v in out.items() if v is not None}


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(where, f"must be an integer >= 1, got {value!r}")
    return value


def cost_model_from_dict(data: Any, where: str, extra: Iterable[str] = ()) -> CostModel:
    """Validate a cost block; `extra` names keys the caller reads itself."""
    if not isinstance(data, dict):
        raise UserError(where, "expected an object")
    unknown = sorted(set(data) - KEYS - set(extra))
    if unknown:
        raise UserError(f"{where}.{unknown[0]}", "unknown field")
    seconds = {}
    for key in _SECONDS:
        value = data.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{where}.{key}", f"must be a number of seconds >= 0, got {value!r}")
        seconds[key] = float(value)
    max_loras = _count(f"{where}.max_loras", data.get("max_loras", 1))
    max_cpu = data.get("max_cpu_loras")
    if max_cpu is not None:
        max_cpu = _count(f"{where}.max_cpu_loras", max_cpu)
        if max_cpu < max_loras:  # vLLM's LoRAConfig refuses this too
            raise UserError(
                f"{where}.max_cpu_loras", f"must be >= max_loras ({max_loras}), got {max_cpu}"
            )
    return CostModel(
        **seconds, max_loras=max_loras, max_cpu_loras=max_cpu, measure_query="query_s" not in data
    )


@dataclass(frozen=True)
class Cost:
    """What serving a search cost (proto ServingCost)."""

    gpu_seconds: float = 0.0  # queries and loads
    load_gpu_seconds: float = 0.0  # of which loads (models, adapters, slot swaps)
    queries: int = 0  # queries sent to endpoints (cache hits cost nothing)
    model_loads: int = 0
    adapter_loads: int = 0
    swaps: int = 0
    wall_s: float = 0.0  # the busiest endpoint's accounted time
    # Each endpoint's figures, and whether its query time was measured or configured.
    endpoints: tuple[EndpointCost, ...] = ()
    gpu_seconds_cap: float | None = None  # SearchSpec.gpu_seconds, when the search had one
    stopped_by_cap: bool = False  # the cap ended the search before its algorithm did

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["endpoints"] = [e.to_json() for e in self.endpoints]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cost:
        out = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        out["endpoints"] = tuple(EndpointCost(**e) for e in data.get("endpoints", ()))
        return cls(**out)


@dataclass(frozen=True)
class EndpointCost:
    """One endpoint's part of a Cost (proto EndpointServingCost)."""

    url: str
    gpu_seconds: float = 0.0
    queries: int = 0  # queries sent
    query_s: float = 0.0  # per query: the configured one, or the mean measured
    query_s_measured: bool = False  # measured from responses (the cost block gave no query_s)
    measured_queries: int = 0  # answered queries whose service time was measured

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


MAX_POOL_NAME = 200


@dataclass(frozen=True)
class GpuPool:
    """GPUs that several full-model endpoints share (`gpu_pool` in the endpoints file): at
    most `slots` of their models are up at once."""

    name: str
    slots: int


def gpu_pool_from_dict(data: Any, where: str) -> GpuPool:
    if not isinstance(data, dict):
        raise UserError(where, 'expected an object {"name": ..., "slots": N}')
    unknown = sorted(set(data) - {"name", "slots"})
    if unknown:
        raise UserError(f"{where}.{unknown[0]}", "unknown field (known: name, slots)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_POOL_NAME:
        raise UserError(f"{where}.name", f"required, a non-empty string of at most {MAX_POOL_NAME}")
    if "slots" not in data:
        raise UserError(f"{where}.slots", "required, the number of models that fit at once")
    return GpuPool(name, _count(f"{where}.slots", data["slots"]))


class ModelPool:
    """The models up on one GpuPool, least recently used first: bringing one more up when all
    `slots` are taken takes the least recently used one down (its endpoint's caches with it),
    so at most `slots` are ever up (`max_up`)."""

    def __init__(self, pool: GpuPool) -> None:
        self.pool = pool
        self._up: OrderedDict[SlotLedger, None] = OrderedDict()
        self.max_up = 0
        self.evictions = 0

    def bring_up(self, ledger: SlotLedger) -> bool:
        """Whether `ledger`'s model must be loaded for its next query."""
        if ledger in self._up:
            self._up.move_to_end(ledger)
            return False
        while len(self._up) >= self.pool.slots:
            down, _ = self._up.popitem(last=False)
            down.model_down()
            self.evictions += 1
        self._up[ledger] = None
        self.max_up = max(self.max_up, len(self._up))
        return True

    def up(self) -> list[SlotLedger]:
        return list(self._up)

    def resumed_up(self, ledger: SlotLedger) -> None:
        """A restored ledger whose model was up when its state was stored: up again here, not
        loaded again (the pool's LRU order is not stored; within its slots it does not matter)."""
        if ledger not in self._up and len(self._up) < self.pool.slots:
            self._up[ledger] = None
            self.max_up = max(self.max_up, len(self._up))
        elif ledger not in self._up:
            ledger.model_down()


class SlotLedger:
    """One endpoint's caches and clock. `serve(adapter)` accounts one query for the base model
    (None) or an adapter and returns the GPU-seconds it cost. With a `pool` the base model is
    up only while the pool keeps it (ModelPool), else from its first query on."""

    def __init__(
        self,
        model: CostModel,
        preloaded: Iterable[str] = (),
        cpu_capacity: int | None = None,
        pool: ModelPool | None = None,
    ) -> None:
        self.model = model
        self.pool = pool
        self.clock_s = 0.0
        self.gpu_seconds = 0.0
        self.load_seconds = 0.0
        self.queries = 0
        self.model_loads = 0
        self.adapter_loads = 0  # reads into host memory (a load or a reload after eviction)
        self.swaps = 0  # moves into a GPU slot
        self.max_resident = 0  # most GPU slots ever in use: never above model.max_loras
        self.measured_s = 0.0  # of gpu_seconds, measured service times (measure_query)
        self.measured_queries = 0
        self.cpu_capacity = cpu_capacity or model.cpu_capacity
        self._cpu: OrderedDict[str, None] = OrderedDict()
        self._gpu: OrderedDict[str, None] = OrderedDict()
        self._model_up = False
        for name in preloaded:  # read at launch, before the clock starts
            self._cpu[name] = None
            while len(self._cpu) > self.cpu_capacity:
                self._cpu.popitem(last=False)

    def _spend(self, seconds: float, load: bool) -> None:
        self.clock_s += seconds
        self.gpu_seconds += seconds
        if load:
            self.load_seconds += seconds

    def resident(self) -> list[str]:
        return list(self._gpu)

    def in_host_memory(self) -> list[str]:
        return list(self._cpu)

    def register(self, name: str) -> None:
        """vLLM reads a runtime-loaded adapter into host memory at once (engine add_lora)."""
        self._into_cpu(name)

    def unregister(self, name: str) -> None:
        self._cpu.pop(name, None)
        self._gpu.pop(name, None)

    def _into_cpu(self, name: str) -> None:
        if name in self._cpu:
            self._cpu.move_to_end(name)
            return
        while len(self._cpu) >= self.cpu_capacity:
            evicted, _ = self._cpu.popitem(last=False)
            self._gpu.pop(evicted, None)  # vLLM deactivates what it drops from host memory
        self._cpu[name] = None
        self.adapter_loads += 1
        self._spend(self.model.adapter_load_s, load=True)

    def model_down(self) -> None:
        """Its model was taken down (its pool needed the GPUs): its adapters go with it, read
        again from their paths when next asked."""
        self._model_up = False
        self._cpu.clear()
        self._gpu.clear()

    def serve(self, adapter: str | None) -> float:
        before = self.gpu_seconds
        load = self.pool.bring_up(self) if self.pool is not None else not self._model_up
        if load:
            self._model_up = True
            self.model_loads += 1
            self._spend(self.model.model_load_s, load=True)
        if adapter is not None:
            self._into_cpu(adapter)
            if adapter in self._gpu:
                self._gpu.move_to_end(adapter)
            else:
                while len(self._gpu) >= self.model.max_loras:
                    self._gpu.popitem(last=False)
                self._gpu[adapter] = None
                self.swaps += 1
                self._spend(self.model.swap_s, load=True)
            self.max_resident = max(self.max_resident, len(self._gpu))
        self.queries += 1
        self._spend(self.model.query_s, load=False)
        return self.gpu_seconds - before

    def would_cost(self, adapter: str | None) -> float:
        """GPU-seconds `serve(adapter)` would add now (loads and configured query time), without
        serving it: what a GPU-second cap checks before a query is sent."""
        seconds = self.model.query_s
        if not self._model_up:
            seconds += self.model.model_load_s
        if adapter is not None:
            if adapter not in self._cpu:
                seconds += self.model.adapter_load_s
            if adapter not in self._gpu:
                seconds += self.model.swap_s
        return seconds

    def measured(self, seconds: float) -> None:
        """An answered query's service time, measured (endpoints with measure_query)."""
        self.measured_s += seconds
        self.measured_queries += 1
        self._spend(seconds, load=False)

    @property
    def query_s(self) -> float:
        """Per query: configured, or the mean measured so far (0 before any)."""
        if not self.model.measure_query:
            return self.model.query_s
        return self.measured_s / self.measured_queries if self.measured_queries else 0.0

    # A search resumed after a restart (or taken over by another replica) continues from the
    # state its runner stored (gemfinder.search.serving_cost, migration 9): what the endpoint
    # holds, and what was spent.
    _COUNTERS = (
        "clock_s", "gpu_seconds", "load_seconds", "queries", "model_loads", "adapter_loads",
        "swaps", "max_resident", "measured_s", "measured_queries",
    )  # fmt: skip

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTERS}
        out.update(cpu=list(self._cpu), gpu=list(self._gpu), model_up=self._model_up)
        return out

    def restore(self, state: dict[str, Any]) -> None:
        for name in self._COUNTERS:
            setattr(self, name, type(getattr(self, name))(state.get(name, 0)))
        self._cpu = OrderedDict.fromkeys(str(n) for n in state.get("cpu", ()))
        self._gpu = OrderedDict.fromkeys(str(n) for n in state.get("gpu", ()) if n in self._cpu)
        self._model_up = bool(state.get("model_up", False))
        if self.pool is not None and self._model_up:
            self.pool.resumed_up(self)  # else its next query would count a load it never had

    def take_back(self, queries: int) -> None:
        """Un-count `queries` sent whose answers never came (lost in a crash, sent again after
        the resume): their configured query time; loads stay, the endpoint did them."""
        queries = max(0, min(queries, self.queries - self.measured_queries))
        seconds = 0.0 if self.model.measure_query else queries * self.model.query_s
        self.queries -= queries
        self.gpu_seconds -= seconds
        self.clock_s -= seconds

    def cost(self) -> Cost:
        return Cost(
            gpu_seconds=self.gpu_seconds,
            load_gpu_seconds=self.load_seconds,
            queries=self.queries,
            model_loads=self.model_loads,
            adapter_loads=self.adapter_loads,
            swaps=self.swaps,
            wall_s=self.clock_s,
        )
