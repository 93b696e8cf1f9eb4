"""Per-endpoint bookkeeping of the simulated fleet: fault schedule, latency, counters, /info.

Tests read the counters directly (`fleet.state(name)`); `/metrics` renders them as Prometheus
text.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from gemfinder.cost import ModelPool
from gemfinder.sim.fleet.serving import ServingLedger, ServingSpec
from gemfinder.sim.fleet.simulator import SimulatedModel

VERSION = "3.3.6-sim"
INFERENCE_ROUTES = ("/", "/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions")


class EndpointState:
    """Counters and fault schedule of one endpoint; tests read these directly."""

    def __init__(self, model: SimulatedModel, seed: int, pool: ModelPool | None = None) -> None:
        self.model = model
        self.spec = model.spec
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.requests: Counter[str] = Counter()  # by route
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.served: Counter[str] = Counter()  # by matrix row: which model really answered
        self.authorization: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []  # last request bodies, for contract tests
        self._script = list(self.spec.fault_script)
        # The virtual clock (zero costs without a `serving` block) and failed adapter loads;
        # `pool`: the GPUs shared with other endpoints of the fleet (serving.gpu_pool).
        self.ledger = ServingLedger(
            self.spec.serving or ServingSpec(), list(self.spec.adapters), self.spec.server, pool
        )
        self.failed_loads = 0
        # Runtime LoRA calls that succeeded: (route, adapter, queries answered before it).
        self.lora_log: list[tuple[str, str, int]] = []
        # Every runtime LoRA request as received: (route, Content-Type, JSON body or the error).
        self.lora_requests: list[tuple[str, str | None, Any]] = []
        self.lora_statuses: Counter[int] = Counter()  # their responses, by HTTP status
        # Adapters registered at run time now, and the most ever registered at once.
        self.runtime_registered: set[str] = set()
        self.most_registered = 0

    def account(self, adapter: str | None) -> None:
        """One answered query on the virtual clock: the base model (None) or an adapter."""
        self.ledger.serve(adapter if adapter in self.model.adapters else None)

    def next_fault(self) -> str | None:
        if self._script:
            return self._script.pop(0)
        u = self.rng.random()
        for kind, rate in self.spec.faults.items():
            if u < rate:
                return kind
            u -= rate
        return None

    def latency(self) -> float:
        lat = self.spec.latency
        if lat.median_s <= 0:
            return 0.0
        return lat.median_s * math.exp(lat.sigma * self.rng.gauss(0.0, 1.0))

    def metrics_text(self) -> str:
        lines = [
            "# HELP tgi_request_count Total number of requests received.",
            "# TYPE tgi_request_count counter",
            f"tgi_request_count {sum(self.requests[r] for r in INFERENCE_ROUTES)}",
            "# HELP tgi_request_success Number of successful requests.",
            "# TYPE tgi_request_success counter",
            f"tgi_request_success {self.statuses[200]}",
            "# HELP tgi_queue_size Requests in flight.",
            "# TYPE tgi_queue_size gauge",
            f"tgi_queue_size {self.in_flight}",
            "# HELP gemfinder_fleet_requests_total Requests by route.",
            "# TYPE gemfinder_fleet_requests_total counter",
        ]
        for route, n in sorted(self.requests.items()):
            lines.append(f'gemfinder_fleet_requests_total{{route="{route}"}} {n}')
        lines += [
            "# HELP gemfinder_fleet_responses_total Responses by HTTP status.",
            "# TYPE gemfinder_fleet_responses_total counter",
        ]
        for status, n in sorted(self.statuses.items()):
            lines.append(f'gemfinder_fleet_responses_total{{status="{status}"}} {n}')
        lines += [
            "# HELP gemfinder_fleet_faults_total Injected faults by kind.",
            "# TYPE gemfinder_fleet_faults_total counter",
        ]
        for kind, n in sorted(self.faults.items()):
            lines.append(f'gemfinder_fleet_faults_total{{kind="{kind}"}} {n}')
        if self.spec.serving is not None:
            lines += self.ledger.metrics_lines()
        return "\n".join(lines) + "\n"

    def info(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "model_id": spec.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": spec.max_concurrent_requests,
            "max_best_of": 2,
            "max_stop_sequences": spec.max_stop_sequences,
            "max_input_tokens": spec.max_input_tokens,
            "max_total_tokens": spec.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": VERSION,
            "sha": None,
            "docker_label": None,
        }
