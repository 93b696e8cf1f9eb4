"""Checks before a search: reach each endpoint's /info and validate candidates against it.

The check that matters most is the adapter id: TGI answers an unknown adapter id with the
base model and no error, so a typo would quietly evaluate the wrong model. Adapter ids are
checked against the adapters the user says each endpoint was launched with (TGI's /info does
not list them) or, for OpenAI-compatible servers, against the ids `/v1/models` lists.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import EndpointConfig

log = logging.getLogger(__name__)


async def _get_json(session: aiohttp.ClientSession, url: str, bearer: str) -> Any | None:
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {bearer}"}) as resp:
            if resp.status != 200:
                return None
            return await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as err:
        log.warning("preflight: %s unavailable (%s)", url, err)
        return None


async def probe(configs: list[EndpointConfig], timeout_s: float = 5.0) -> dict[str, dict]:
    """Per endpoint url: {"info": /info JSON or None, "models": ids from /v1/models or None}."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    out: dict[str, dict] = {}
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        infos = await asyncio.gather(
            *(_get_json(session, f"{c.key}/info", c.bearer) for c in configs)
        )
        models = await asyncio.gather(
            *(_get_json(session, f"{c.key}/v1/models", c.bearer) for c in configs)
        )
    for config, info, listed in zip(configs, infos, models, strict=True):
        ids = None
        # vLLM/SGLang list base model and adapters; TGI returns one ModelInfo object.
        if isinstance(listed, dict) and isinstance(listed.get("data"), list):
            ids = [str(m.get("id")) for m in listed["data"] if isinstance(m, dict)]
        out[config.key] = {"info": info if isinstance(info, dict) else None, "models": ids}
    return out


def check_candidates(
    candidates: list[Candidate], configs: dict[str, EndpointConfig], probes: dict[str, dict]
) -> None:
    """Raise one UserError naming every candidate that would evaluate the wrong model."""
    problems: list[str] = []
    for i, cand in enumerate(candidates):
        config = configs.get(cand.endpoint)
        where = f"candidates[{i}] ({cand.model_id})"
        if config is not None and config.backend != cand.backend:
            problems.append(f"{where}: backend {cand.backend} but endpoint is {config.backend}")
        probe_ = probes.get(cand.endpoint, {})
        if cand.adapter_id is not None:
            known = config.adapters if config is not None else None
            if known is None and probe_.get("models") is not None:
                known = tuple(probe_["models"])
            if known is None:
                problems.append(
                    f"{where}: adapter {cand.adapter_id!r} cannot be checked: list the adapters "
                    f"endpoint {cand.endpoint} was launched with (TGI /info does not)"
                )
            elif cand.adapter_id not in known:
                problems.append(
                    f"{where}: adapter {cand.adapter_id!r} is not served by {cand.endpoint} "
                    f"(adapters: {', '.join(known) or 'none'}); TGI would silently answer with "
                    "the base model"
                )
        elif cand.backend == "tgi" and probe_.get("info"):
            served = probe_["info"].get("model_id")
            if served != cand.model_id:
                problems.append(
                    f"{where}: no adapter_id, but {cand.endpoint} serves {served!r}: this would "
                    "evaluate the base model under another name"
                )
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise UserError("candidates", shown + more)
