"""Does a candidate evaluate the model it names? The per-backend checks of the pre-search probe.

The check that matters most is the adapter id: TGI answers an unknown adapter id with the base
model and no error, so a typo would quietly evaluate the wrong model. Adapter ids are checked
against the adapters the user says the endpoint was launched with (TGI's /info does not list
them) or else against the ids `/v1/models` lists. A candidate without an adapter is checked
against what the server says it serves: TGI's /info model id (`served_by_info`), or the names
an OpenAI-compatible server lists (`served_by_listing`: vLLM answers any other name with a 404).

Each check gets the candidate, its endpoint's settings (None: not in the operator's list), the
probe's answer and whether an unreachable endpoint refuses the search, and returns (field under
the candidate, reason) pairs; gemfinder.oracles.preflight names the candidate and gathers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gemfinder.candidates import Candidate
    from gemfinder.oracles.endpoints import EndpointConfig


def _adapter(
    cand: Candidate, config: EndpointConfig | None, probe: dict, *, later: bool
) -> list[tuple[str, str]]:
    who = f"{cand.model_id}:"
    known = config.adapters if config is not None else None
    if known is None and probe.get("models") is not None:
        known = tuple(probe["models"])
    if config is not None and config.lora_paths:  # registered on demand (oracles.lora_runtime)
        known = (*(known or ()), *config.lora_paths)
    if known is None and not later:
        return [
            (
                "adapter_id",
                f"{who} adapter {cand.adapter_id!r} cannot be checked: list the adapters "
                f'endpoint {cand.endpoint} was launched with in its "adapters" in the '
                "endpoints file (--endpoints FILE; TGI /info does not list them)",
            )
        ]
    if known is not None and cand.adapter_id not in known:
        return [
            (
                "adapter_id",
                f"{who} adapter {cand.adapter_id!r} is not served by {cand.endpoint} "
                f"(adapters: {', '.join(known) or 'none'}); TGI would silently answer "
                "with the base model",
            )
        ]
    return []


def served_by_info(
    cand: Candidate, config: EndpointConfig | None, probe: dict, down_refused: bool
) -> list[tuple[str, str]]:
    """TGI: an adapter must be one the endpoint was launched with; a base-model candidate
    must be the model /info names."""
    if cand.adapter_id is not None:
        return _adapter(cand, config, probe, later=False)
    served = (probe.get("info") or {}).get("model_id")
    if probe.get("info") and served != cand.model_id:
        return [
            (
                "adapter_id",
                f"{cand.model_id}: no adapter_id, but {cand.endpoint} serves {served!r}: this "
                "would evaluate the base model under another name",
            )
        ]
    return []


def served_by_listing(
    cand: Candidate, config: EndpointConfig | None, probe: dict, down_refused: bool
) -> list[tuple[str, str]]:
    """OpenAI-compatible servers (vLLM, SGLang): the adapter, or the base model's served name,
    must be among the ids /v1/models lists."""
    if cand.adapter_id is not None:
        # Such a server lists its adapters once it answers: while it is down, and that refuses
        # the search, being down is the problem to report, not an adapter left unchecked.
        later = down_refused and probe.get("unreachable") is not None
        return _adapter(cand, config, probe, later=later)
    listed = probe.get("models")
    name = (config.served_model if config is not None else None) or cand.model_id
    if listed is not None and name not in listed:
        return [
            (
                "model_id",
                f"{cand.model_id}: {cand.endpoint} lists {', '.join(listed) or 'no model'}"
                f", not {name!r}: give the listed name as served_model in the endpoint "
                "settings (vLLM --served-model-name)",
            )
        ]
    return []
