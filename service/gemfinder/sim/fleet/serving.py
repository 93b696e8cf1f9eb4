"""What serving costs on one simulated endpoint: model and adapter loads, GPU slots, query time.

An endpoint with a `serving` block in the fleet config keeps a virtual clock instead of sleeping:
every request advances it by what the request would have cost a GPU, so a search that would
spend hours bringing models and adapters up runs in seconds and the fleet reports the
GPU-seconds and wall time it accounted (`EndpointState.serving`, `/metrics`).

The model follows vLLM's LoRA machinery (the LRU caches of vllm/lora/worker_manager.py):
- the base model is brought up once, on the first request (`model_load_s`);
- registered adapters (`--lora-modules`, or `POST /v1/load_lora_adapter`) stay registered,
  but only `max_cpu_loras` of them are held in host memory, least recently used evicted; an
  evicted adapter is read from its path again when next asked (`adapter_load_s`);
- a request for an adapter needs it in one of `max_loras` GPU slots; moving it there costs
  `swap_s` and evicts the least recently used slot; the slots are never exceeded;
- every query then costs `query_s` of GPU time. Queries on one endpoint are accounted one after
  another (no batching), so the figures are an upper bound of what a batching server spends.
TGI loads its `LORA_ADAPTERS` at launch: they are all in host memory from the start (its
`max_cpu_loras` is their number) and the same GPU slots apply.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gemfinder.errors import UserError

_KEYS = {
    "runtime_lora_updating",
    "max_loras",
    "max_cpu_loras",
    "model_load_s",
    "adapter_load_s",
    "swap_s",
    "query_s",
    "lora_paths",
}


@dataclass(frozen=True)
class ServingSpec:
    """The `serving` block of an endpoint (docs/oracles.md, "Serving cost")."""

    # VLLM_ALLOW_RUNTIME_LORA_UPDATING: the /v1/load_lora_adapter routes exist only with it.
    runtime_lora_updating: bool = False
    max_loras: int = 1  # vLLM's --max-loras default
    max_cpu_loras: int | None = None  # vLLM's --max-cpu-loras; None = max_loras, as vLLM does
    model_load_s: float = 0.0
    adapter_load_s: float = 0.0
    swap_s: float = 0.0
    query_s: float = 0.0
    # Adapter directories a runtime load may name (lora_path -> matrix row); any other path is
    # vLLM's "No adapter found" 404.
    lora_paths: dict[str, str] = field(default_factory=dict)

    @property
    def cpu_capacity(self) -> int:
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UserError(where, f"must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(where, f"must be an integer >= 1, got {value!r}")
    return value


def serving_from_dict(data: Any, where: str) -> ServingSpec:
    if not isinstance(data, dict):
        raise UserError(where, "expected an object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UserError(f"{where}.{unknown[0]}", "unknown field")
    runtime = data.get("runtime_lora_updating", False)
    if not isinstance(runtime, bool):
        raise UserError(f"{where}.runtime_lora_updating", f"must be true or false, got {runtime!r}")
    max_loras = _count(f"{where}.max_loras", data.get("max_loras", 1))
    max_cpu = data.get("max_cpu_loras")
    if max_cpu is not None:
        max_cpu = _count(f"{where}.max_cpu_loras", max_cpu)
        if max_cpu < max_loras:  # vLLM's LoRAConfig refuses this too
            raise UserError(
                f"{where}.max_cpu_loras", f"must be >= max_loras ({max_loras}), got {max_cpu}"
            )
    paths = data.get("lora_paths", {})
    if not isinstance(paths, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in paths.items()
    ):
        raise UserError(f"{where}.lora_paths", "must be an object adapter path -> matrix row")
    return ServingSpec(
        runtime_lora_updating=runtime,
        max_loras=max_loras,
        max_cpu_loras=max_cpu,
        **{
            key: _seconds(f"{where}.{key}", data.get(key, 0.0))
            for key in ("model_load_s", "adapter_load_s", "swap_s", "query_s")
        },
        lora_paths=dict(paths),
    )


class ServingLedger:
    """The virtual clock and the caches of one endpoint. `serve(name)` accounts one query for
    the base model (None) or an adapter and returns the GPU-seconds it cost."""

    def __init__(self, spec: ServingSpec, static_adapters: list[str], server: str) -> None:
        self.spec = spec
        self.clock_s = 0.0  # simulated wall time of this endpoint (its GPU is never idle here)
        self.gpu_seconds = 0.0
        self.queries = 0
        self.model_loads = 0
        self.adapter_loads = 0  # reads into host memory (a load or a reload after eviction)
        self.swaps = 0  # moves into a GPU slot
        self.max_resident = 0  # most GPU slots ever in use: never above spec.max_loras
        self._cpu: OrderedDict[str, None] = OrderedDict()
        self._gpu: OrderedDict[str, None] = OrderedDict()
        self._model_up = False
        # TGI holds every LORA_ADAPTERS adapter in memory from launch; vLLM reads its
        # --lora-modules at launch into the same LRU cache runtime loads go through.
        self.cpu_capacity = spec.cpu_capacity
        if server == "tgi":
            self.cpu_capacity = max(self.cpu_capacity, len(static_adapters))
        for name in static_adapters:  # read before the clock starts: launch is not accounted
            self._cpu[name] = None
            while len(self._cpu) > self.cpu_capacity:
                self._cpu.popitem(last=False)

    def _spend(self, seconds: float) -> None:
        self.clock_s += seconds
        self.gpu_seconds += seconds

    def register(self, name: str) -> None:
        """A successful /v1/load_lora_adapter: vLLM reads the adapter into host memory at once
        (engine add_lora), which may evict the least recently used one."""
        self._into_cpu(name)

    def unregister(self, name: str) -> None:
        self._cpu.pop(name, None)
        self._gpu.pop(name, None)

    def resident(self) -> list[str]:
        return list(self._gpu)

    def in_host_memory(self) -> list[str]:
        return list(self._cpu)

    def _into_cpu(self, name: str) -> None:
        if name in self._cpu:
            self._cpu.move_to_end(name)
            return
        while len(self._cpu) >= self.cpu_capacity:
            evicted, _ = self._cpu.popitem(last=False)
            self._gpu.pop(evicted, None)  # vLLM deactivates what it drops from host memory
        self._cpu[name] = None
        self.adapter_loads += 1
        self._spend(self.spec.adapter_load_s)

    def serve(self, adapter: str | None) -> float:
        before = self.gpu_seconds
        if not self._model_up:
            self._model_up = True
            self.model_loads += 1
            self._spend(self.spec.model_load_s)
        if adapter is not None:
            self._into_cpu(adapter)
            if adapter in self._gpu:
                self._gpu.move_to_end(adapter)
            else:
                while len(self._gpu) >= self.spec.max_loras:
                    self._gpu.popitem(last=False)
                self._gpu[adapter] = None
                self.swaps += 1
                self._spend(self.spec.swap_s)
            self.max_resident = max(self.max_resident, len(self._gpu))
        self.queries += 1
        self._spend(self.spec.query_s)
        return self.gpu_seconds - before

    def summary(self) -> dict[str, float | int]:
        return {
            "wall_s": self.clock_s,
            "gpu_seconds": self.gpu_seconds,
            "queries": self.queries,
            "model_loads": self.model_loads,
            "adapter_loads": self.adapter_loads,
            "swaps": self.swaps,
            "max_resident": self.max_resident,
        }

    def metrics_lines(self) -> list[str]:
        return [
            "# HELP gemfinder_fleet_virtual_seconds Simulated wall time this endpoint accounted.",
            "# TYPE gemfinder_fleet_virtual_seconds gauge",
            f"gemfinder_fleet_virtual_seconds {self.clock_s}",
            "# HELP gemfinder_fleet_gpu_seconds_total GPU-seconds accounted (loads and queries).",
            "# TYPE gemfinder_fleet_gpu_seconds_total counter",
            f"gemfinder_fleet_gpu_seconds_total {self.gpu_seconds}",
            "# HELP gemfinder_fleet_loads_total Model loads, adapter reads and GPU slot swaps.",
            "# TYPE gemfinder_fleet_loads_total counter",
            f'gemfinder_fleet_loads_total{{kind="model"}} {self.model_loads}',
            f'gemfinder_fleet_loads_total{{kind="adapter"}} {self.adapter_loads}',
            f'gemfinder_fleet_loads_total{{kind="swap"}} {self.swaps}',
        ]
