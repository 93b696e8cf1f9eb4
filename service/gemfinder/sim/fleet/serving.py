"""What serving costs on one simulated endpoint: model and adapter loads, GPU slots, query time.

An endpoint with a `serving` block in the fleet config keeps a virtual clock instead of sleeping:
every request advances it by what the request would have cost a GPU, so a search that would
spend hours bringing models and adapters up runs in seconds and the fleet reports the
GPU-seconds and wall time it accounted (`EndpointState.serving`, `/metrics`).

The accounting is gemfinder.cost's SlotLedger, the one a search runs on its own side, after
vLLM's LoRA machinery (the LRU caches of vllm/lora/worker_manager.py):
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
Endpoints whose `serving` blocks name one `gpu_pool` ({"name", "slots"}) are full models taking
turns on shared GPUs: one gemfinder.cost.ModelPool for the fleet keeps at most `slots` of their
models up, the least recently used taken down (and its adapters with it) to bring another up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gemfinder.cost import (
    CostModel,
    GpuPool,
    ModelPool,
    SlotLedger,
    cost_model_from_dict,
    gpu_pool_from_dict,
)
from gemfinder.errors import UserError


@dataclass(frozen=True)
class ServingSpec:
    """The `serving` block of an endpoint (docs/oracles.md, "Serving cost"): the cost model,
    and vLLM's runtime LoRA API."""

    cost: CostModel = CostModel()
    # VLLM_ALLOW_RUNTIME_LORA_UPDATING: the /v1/load_lora_adapter routes exist only with it.
    runtime_lora_updating: bool = False
    # Adapter directories a runtime load may name (lora_path -> matrix row); any other path is
    # vLLM's "No adapter found" 404.
    lora_paths: dict[str, str] = field(default_factory=dict)
    # Adapter directories the engine reads but refuses (path -> its message): vLLM's 400.
    failing_lora_paths: dict[str, str] = field(default_factory=dict)
    # The first runtime loads, in order: "500" fails one (vLLM's InternalServerError), None
    # serves it; then all are served.
    lora_fault_script: tuple[str | None, ...] = ()
    # GPUs shared with the other endpoints of the fleet naming this pool (full models).
    gpu_pool: GpuPool | None = None


def serving_from_dict(data: Any, where: str) -> ServingSpec:
    cost = cost_model_from_dict(
        data,
        where,
        extra=(
            "runtime_lora_updating",
            "lora_paths",
            "failing_lora_paths",
            "lora_fault_script",
            "gpu_pool",
        ),
    )
    pool = data.get("gpu_pool")
    if pool is not None:
        pool = gpu_pool_from_dict(pool, f"{where}.gpu_pool")
    runtime = data.get("runtime_lora_updating", False)
    if not isinstance(runtime, bool):
        raise UserError(f"{where}.runtime_lora_updating", f"must be true or false, got {runtime!r}")
    paths = data.get("lora_paths", {})
    if not isinstance(paths, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in paths.items()
    ):
        raise UserError(f"{where}.lora_paths", "must be an object adapter path -> matrix row")
    failing = data.get("failing_lora_paths", {})
    if not isinstance(failing, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in failing.items()
    ):
        raise UserError(
            f"{where}.failing_lora_paths", "must be an object adapter path -> error message"
        )
    script = data.get("lora_fault_script", [])
    if not isinstance(script, list) or any(f not in (None, "500") for f in script):
        raise UserError(f"{where}.lora_fault_script", 'a list of null or "500"')
    return ServingSpec(
        cost=cost,
        runtime_lora_updating=runtime,
        lora_paths=dict(paths),
        failing_lora_paths=dict(failing),
        lora_fault_script=tuple(script),
        gpu_pool=pool,
    )


class ServingLedger(SlotLedger):
    """An endpoint's ledger: TGI holds every LORA_ADAPTERS adapter in host memory from launch;
    vLLM reads its --lora-modules at launch into the LRU cache runtime loads go through."""

    def __init__(
        self,
        spec: ServingSpec,
        static_adapters: list[str],
        server: str,
        pool: ModelPool | None = None,
    ) -> None:
        capacity = spec.cost.cpu_capacity
        if server == "tgi":
            capacity = max(capacity, len(static_adapters))
        super().__init__(spec.cost, static_adapters, cpu_capacity=capacity, pool=pool)

    def summary(self) -> dict[str, float | int]:
        return {**self.cost().to_json(), "max_resident": self.max_resident}

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
