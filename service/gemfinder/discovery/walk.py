"""Walk a base model's tree on the Hugging Face Hub: every fine-tune, adapter and merge below it.

The Hub tags each derived model `base_model:<relation>:<parent id>` (relation finetune, adapter,
merge or quantized), so the children of X are `list_models(filter="base_model:<relation>:X")`.
`discover` walks breadth-first from the base through the relations asked, down to `max_depth`,
keeping each model once (a merge has several parents: its first parent and depth, as reached
breadth-first, win). Quantized re-uploads are left out by default: they hold the same weights
as their parent and TGI cannot serve most of them (GGUF).

Requests: one `model_info` for the base, then one listing (paginated) per model above
`max_depth` and relation asked. huggingface_hub retries listings on 429 and 5xx (honouring the
Hub's rate-limit headers); everything else that fails is a `UserError` without a traceback.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import get_session, validate_repo_id

from gemfinder import __version__
from gemfinder.errors import UserError

RELATIONS = ("finetune", "adapter", "merge", "quantized")
DEFAULT_RELATIONS = ("finetune", "adapter", "merge")
DEFAULT_HUB = "https://huggingface.co"
# What each listing asks for. The list endpoint refuses baseModels and childrenModelCount
# (only model_info accepts them), although huggingface_hub's type still offers them.
EXPAND = ["downloads", "tags"]


@dataclass(frozen=True)
class FoundModel:
    """A model of the tree: `parent`/`relation` are None for the base (depth 0)."""

    model_id: str
    parent: str | None
    relation: str | None
    depth: int
    downloads: int | None
    official: bool
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """One step of the walk: `parents_done` of `parents` at `depth` listed, `found` new there."""

    depth: int
    parents_done: int
    parents: int
    found: int
    total: int
    done: bool  # the depth is finished


@dataclass
class Discovery:
    """The walk's result: models in breadth-first order, the base first."""

    base_model: str
    hub_endpoint: str
    relations: tuple[str, ...]
    max_depth: int
    models: list[FoundModel] = field(default_factory=list)
    reached_again: int = 0  # models listed under a second parent (merges), kept once
    listings: int = 0  # list_models calls (each may span several pages)
    seconds: float = 0.0
    note: str | None = None  # set when the walk stopped before the tree's end

    @property
    def truncated(self) -> bool:
        return self.note is not None


def resolve_hub(hub_endpoint: str | None, token: str | None) -> tuple[str, str | bool | None]:
    """The hub URL (argument, else $HF_ENDPOINT, else huggingface.co) and the token to send.

    An explicit token is sent. Without one, huggingface_hub's own token (HF_TOKEN, the saved
    login) goes only to the hub it is configured for (huggingface.co or $HF_ENDPOINT), never
    to another URL such as a local stand-in.
    """
    configured = (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")
    url = (hub_endpoint or configured).rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError("hub_endpoint", f"not an http(s) URL: {url!r}")
    if token:
        return url, token
    return url, (None if url in (configured, DEFAULT_HUB) else False)


def discover(
    base_model: str,
    *,
    api: HfApi | None = None,
    hub_endpoint: str | None = None,
    token: str | None = None,
    relations: Sequence[str] = DEFAULT_RELATIONS,
    max_depth: int = 3,
    max_models: int = 2000,
    progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = 60.0,
) -> Discovery:
    """Every model below `base_model` through `relations`, down to `max_depth` levels.

    Give `api` (an `HfApi`) or `hub_endpoint`/`token` (see `resolve_hub`). Stops at
    `max_models` models (the base included) with `Discovery.note` saying so. `timeout_s` bounds
    each HTTP request: huggingface_hub's client has none, so a hub that accepts the connection
    and never answers would stall the walk (None: no limit).
    """
    try:
        validate_repo_id(base_model)
    except HFValidationError as err:
        raise UserError("base_model", str(err).splitlines()[0]) from None
    relations = tuple(dict.fromkeys(relations))
    unknown = [r for r in relations if r not in RELATIONS]
    if unknown or not relations:
        raise UserError("relations", f"choose among {', '.join(RELATIONS)}, got {unknown!r}")
    if max_depth < 1:
        raise UserError("max_depth", f"must be at least 1, got {max_depth}")
    if max_models < 1:
        raise UserError("max_models", f"must be at least 1, got {max_models}")
    if timeout_s is not None and not 0 < timeout_s < math.inf:
        raise UserError("timeout_s", f"must be a positive number of seconds, got {timeout_s}")
    if api is None:
        url, sent_token = resolve_hub(hub_endpoint, token)
        api = HfApi(
            endpoint=url, token=sent_token, library_name="gemfinder", library_version=__version__
        )
    started = time.perf_counter()
    result = Discovery(base_model, api.endpoint.rstrip("/"), relations, max_depth)
    try:
        with _request_timeout(timeout_s):
            _walk(api, result, max_models, progress)
    except RepositoryNotFoundError:
        raise UserError(
            "base_model",
            f"{base_model!r} not found on {result.hub_endpoint} (a private model needs a token)",
        ) from None
    except HfHubHTTPError as err:
        raise _http_error(err, result.hub_endpoint) from None
    except OfflineModeIsEnabled:
        raise UserError("hub_endpoint", "HF_HUB_OFFLINE is set: unset it to list models") from None
    except httpx2.HTTPError as err:
        reason = str(err) or type(err).__name__
        if isinstance(err, httpx2.TimeoutException):
            reason = f"no answer within {timeout_s:g} s ({type(err).__name__})"
        raise UserError("hub_endpoint", f"cannot reach {result.hub_endpoint}: {reason}") from None
    except (ValueError, TypeError, KeyError) as err:  # a 200 that is not the Hub's JSON
        raise UserError(
            "hub_endpoint",
            f"{result.hub_endpoint} did not answer like the Hub's model API ({err})",
        ) from None
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _request_timeout(timeout_s: float | None) -> Iterator[None]:
    """Bound every request of huggingface_hub's shared session while the walk runs.

    `HfApi.model_info` and the listings' pagination pass `timeout=None` to each request, which
    overrides any client default, and `list_models` takes no timeout; a request hook sets the
    timeout on each request just before it is sent instead, and is removed afterwards.
    """
    if timeout_s is None:
        yield
        return
    session = get_session()
    before = list(session.event_hooks["request"])

    def bound(request: httpx2.Request) -> None:
        request.extensions["timeout"] = httpx2.Timeout(timeout_s).as_dict()

    session.event_hooks = {**session.event_hooks, "request": [*before, bound]}
    try:
        yield
    finally:
        session.event_hooks = {**session.event_hooks, "request": before}


def _walk(
    api: HfApi,
    result: Discovery,
    max_models: int,
    progress: Callable[[Progress], None] | None,
) -> None:
    info = api.model_info(result.base_model, expand=["author", "downloads", "tags"])
    base_id = info.id
    result.base_model = base_id
    author = info.author or (base_id.split("/", 1)[0] if "/" in base_id else None)

    def official(model_id: str) -> bool:
        return model_id == base_id or (author is not None and model_id.startswith(author + "/"))

    result.models.append(
        FoundModel(base_id, None, None, 0, info.downloads, True, tuple(info.tags or ()))
    )
    seen = {base_id}
    frontier = [base_id]
    for depth in range(1, result.max_depth + 1):
        found: list[str] = []
        for done, parent in enumerate(frontier, start=1):
            for relation in result.relations:
                result.listings += 1
                # Most downloaded first, so a cut at max_models keeps the popular ones.
                listing = api.list_models(
                    filter=f"base_model:{relation}:{parent}", sort="downloads", expand=EXPAND
                )
                for model in listing:
                    if model.id in seen:
                        result.reached_again += 1
                        continue
                    if len(result.models) >= max_models:
                        result.note = _cut(max_models, depth, done, frontier, relation)
                        _report(progress, depth, done, frontier, found, result, True)
                        return
                    seen.add(model.id)
                    found.append(model.id)
                    result.models.append(
                        FoundModel(
                            model.id,
                            parent,
                            relation,
                            depth,
                            model.downloads,
                            official(model.id),
                            tuple(model.tags or ()),
                        )
                    )
            _report(progress, depth, done, frontier, found, result, done == len(frontier))
        frontier = found
        if not frontier:
            return


def _cut(max_models: int, depth: int, done: int, frontier: list[str], relation: str) -> str:
    return (
        f"stopped at --max-models {max_models} while listing depth {depth} (parent {done} of "
        f"{len(frontier)}: {relation} children of {frontier[done - 1]}); the rest of that depth "
        "and deeper levels were not listed"
    )


def _report(progress, depth, done, frontier, found, result, finished) -> None:
    if progress is not None:
        progress(Progress(depth, done, len(frontier), len(found), len(result.models), finished))


def _http_error(err: HfHubHTTPError, hub: str) -> UserError:
    response = err.response
    status = response.status_code if response is not None else None
    message = err.server_message or str(err).splitlines()[0]
    if status == 401:
        return UserError("token", f"{hub} refused the token (401): {message}")
    if status == 429:
        return UserError(
            "hub_endpoint",
            f"{hub} rate-limited the requests (429, after huggingface_hub's retries for "
            "listings); wait and run again, or give a token for a higher limit",
        )
    return UserError("hub_endpoint", f"{hub} answered HTTP {status}: {message}")
