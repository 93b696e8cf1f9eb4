"""Configuration of a simulated inference fleet: endpoints, their models, latency and faults.

The JSON schema is documented in docs/oracles.md; `load_fleet_config` validates a file and
names the offending field in every error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.sim.fleet.serving import ServingSpec, serving_from_dict

# Fault kinds an endpoint can inject: TGI's own error statuses, a proxy's 503, a 200 whose
# body is not the API's JSON, and a hang long enough to trip the client's timeout.
FAULT_KINDS = ("429", "503", "424", "500", "422", "garbage", "timeout")
LOOPBACK_HOSTS = ("127.0.0.1",)
SERVERS = ("tgi", "vllm")  # whose API an endpoint speaks besides the OpenAI routes
MAX_PORT = 65535


@dataclass(frozen=True)
class Latency:
    """Lognormal service time: median `median_s`, log-space spread `sigma`. 0 = no sleep."""

    median_s: float = 0.0
    sigma: float = 0.0


@dataclass(frozen=True)
class EndpointSpec:
    """One simulated TGI server: a base model plus LoRA adapters, each a row of the matrix.

    `adapters` maps the adapter id clients send to the matrix row that answers for it (TGI's
    `LORA_ADAPTERS=name=/path` form); a plain list means id = row name.
    """

    name: str
    model_id: str
    adapters: dict[str, str] = field(default_factory=dict)
    port: int = 0
    max_concurrent_requests: int = 128
    max_input_tokens: int = 4096
    max_total_tokens: int = 8192
    max_stop_sequences: int = 4
    latency: Latency = Latency()
    faults: dict[str, float] = field(default_factory=dict)
    # Faults applied to the first requests in order (None = serve normally), then `faults`.
    fault_script: tuple[str | None, ...] = ()
    hang_s: float = 30.0
    down: bool = False
    # False: a base model without a chat template, as vLLM serves it: /v1/chat/completions
    # answers 400 and only /v1/completions (or TGI's /generate) gets answers.
    chat_template: bool = True
    # "vllm": vLLM's OpenAI server (no /generate, no /info; /v1/models lists the adapters).
    server: str = "tgi"
    # What serving costs on the virtual clock, and vLLM's runtime LoRA API (serving.py).
    serving: ServingSpec | None = None


@dataclass(frozen=True)
class FleetConfig:
    endpoints: tuple[EndpointSpec, ...]
    host: str = "127.0.0.1"
    seed: int = 0
    # Under sampling, the chance a simulated model's answer flips from its matrix verdict.
    sampling_flip_prob: float = 0.3
    matrix: str | None = None
    query_set: str | None = None

    def all_model_rows(self) -> list[str]:
        rows = []
        for ep in self.endpoints:
            rows.append(ep.model_id)
            rows.extend(ep.adapters.values())
        return rows


def _num(where: str, value: Any, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(where, f"must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise UserError(where, f"must be {bound}, got {value}")
    return float(value)


def _int(where: str, value: Any, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(where, f"must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise UserError(where, f"must be at most {high}, got {value}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(where, f"must be true or false, got {value!r}")
    return value


_ENDPOINT_KEYS = {
    "name",
    "model_id",
    "adapters",
    "port",
    "max_concurrent_requests",
    "max_input_tokens",
    "max_total_tokens",
    "max_stop_sequences",
    "latency",
    "faults",
    "fault_script",
    "hang_s",
    "down",
    "chat_template",
    "server",
    "serving",
}


def endpoint_from_dict(data: Any, where: str) -> EndpointSpec:
    if not isinstance(data, dict):
        raise UserError(where, "expected an object")
    unknown = sorted(set(data) - _ENDPOINT_KEYS)
    if unknown:
        raise UserError(f"{where}.{unknown[0]}", "unknown field")
    for key in ("name", "model_id"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise UserError(f"{where}.{key}", "required, a non-empty string")
    raw_adapters = data.get("adapters", {})
    if isinstance(raw_adapters, list):
        raw_adapters = {str(a): str(a) for a in raw_adapters}
    if not isinstance(raw_adapters, dict):
        raise UserError(f"{where}.adapters", "must be a list of ids or an object id -> model row")
    faults = data.get("faults", {})
    if not isinstance(faults, dict):
        raise UserError(f"{where}.faults", "must be an object kind -> probability")
    for kind, rate in faults.items():
        if kind not in FAULT_KINDS:
            raise UserError(
                f"{where}.faults.{kind}", f"unknown fault; use {', '.join(FAULT_KINDS)}"
            )
        _num(f"{where}.faults.{kind}", rate, 0.0, 1.0)
    if sum(faults.values()) > 1.0:
        raise UserError(f"{where}.faults", "probabilities add up to more than 1")
    script = data.get("fault_script", [])
    if not isinstance(script, list) or any(s is not None and s not in FAULT_KINDS for s in script):
        raise UserError(f"{where}.fault_script", f"a list of null or {', '.join(FAULT_KINDS)}")
    latency = data.get("latency", {})
    if not isinstance(latency, dict) or set(latency) - {"median_s", "sigma"}:
        raise UserError(f"{where}.latency", "an object with median_s and sigma")
    spec = EndpointSpec(
        name=data["name"],
        model_id=data["model_id"],
        adapters={str(k): str(v) for k, v in raw_adapters.items()},
        port=_int(f"{where}.port", data.get("port", 0), 0, MAX_PORT),
        max_concurrent_requests=_int(
            f"{where}.max_concurrent_requests", data.get("max_concurrent_requests", 128), 1
        ),
        max_input_tokens=_int(f"{where}.max_input_tokens", data.get("max_input_tokens", 4096), 1),
        max_total_tokens=_int(f"{where}.max_total_tokens", data.get("max_total_tokens", 8192), 2),
        max_stop_sequences=_int(f"{where}.max_stop_sequences", data.get("max_stop_sequences", 4)),
        latency=Latency(
            median_s=_num(f"{where}.latency.median_s", latency.get("median_s", 0.0)),
            sigma=_num(f"{where}.latency.sigma", latency.get("sigma", 0.0)),
        ),
        faults={k: float(v) for k, v in faults.items()},
        fault_script=tuple(script),
        hang_s=_num(f"{where}.hang_s", data.get("hang_s", 30.0)),
        down=bool(data.get("down", False)),
        chat_template=_bool(f"{where}.chat_template", data.get("chat_template", True)),
        server=data.get("server", "tgi"),
        serving=None
        if data.get("serving") is None
        else serving_from_dict(data["serving"], f"{where}.serving"),
    )
    if spec.server not in SERVERS:
        raise UserError(f"{where}.server", f"must be one of {', '.join(SERVERS)}")
    if spec.serving and spec.serving.runtime_lora_updating and spec.server != "vllm":
        raise UserError(
            f"{where}.serving.runtime_lora_updating", 'only vLLM has it (server: "vllm")'
        )
    if spec.max_total_tokens <= spec.max_input_tokens:
        raise UserError(f"{where}.max_total_tokens", "must exceed max_input_tokens")
    return spec


def fleet_from_dict(data: Any, where: str = "fleet") -> FleetConfig:
    if not isinstance(data, dict):
        raise UserError(where, "expected a JSON object")
    unknown = sorted(
        set(data) - {"endpoints", "host", "seed", "sampling_flip_prob", "matrix", "query_set"}
    )
    if unknown:
        raise UserError(f"{where}.{unknown[0]}", "unknown field")
    raw = data.get("endpoints")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}.endpoints", "required, a non-empty list")
    endpoints = tuple(endpoint_from_dict(e, f"{where}.endpoints[{i}]") for i, e in enumerate(raw))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise UserError(f"{where}.endpoints", "endpoint names must be unique")
    host = data.get("host", "127.0.0.1")
    if host not in LOOPBACK_HOSTS:
        raise UserError(f"{where}.host", "the simulated fleet binds loopback only (127.0.0.1)")
    _check_pools(endpoints, where)
    ports = [e.port for e in endpoints if e.port]
    if len(set(ports)) != len(ports):
        raise UserError(f"{where}.endpoints", "fixed ports must be unique")
    return FleetConfig(
        endpoints=endpoints,
        host=host,
        seed=_int(f"{where}.seed", data.get("seed", 0)),
        sampling_flip_prob=_num(
            f"{where}.sampling_flip_prob", data.get("sampling_flip_prob", 0.3), 0.0, 1.0
        ),
        matrix=data.get("matrix"),
        query_set=data.get("query_set"),
    )


def _check_pools(endpoints: tuple[EndpointSpec, ...], where: str) -> None:
    """The endpoints of one GPU pool agree on its size (as in an endpoints file)."""
    first: dict[str, tuple[int, int]] = {}  # pool name -> (endpoint index, slots)
    for i, spec in enumerate(endpoints):
        pool = spec.serving.gpu_pool if spec.serving else None
        if pool is None:
            continue
        j, slots = first.setdefault(pool.name, (i, pool.slots))
        if slots != pool.slots:
            raise UserError(
                f"{where}.endpoints[{i}].serving.gpu_pool.slots",
                f"pool {pool.name!r} has {slots} slots at endpoints[{j}], {pool.slots} here",
            )


def load_fleet_config(path: str | Path) -> FleetConfig:
    """Read a fleet JSON file; relative `matrix`/`query_set` paths resolve beside the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config", f"no such file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            "config", f"{path.name}: invalid JSON ({err.msg}, line {err.lineno})"
        ) from None
    config = fleet_from_dict(data)
    resolve = {}
    for key in ("matrix", "query_set"):
        value = getattr(config, key)
        if value is not None and not Path(value).is_absolute():
            resolve[key] = str(path.parent / value)
    if resolve:
        config = FleetConfig(**{**config.__dict__, **resolve})
    return config
