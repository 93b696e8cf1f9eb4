"""A stand-in for the Hugging Face Hub's model API, enough for `gemfinder discover` and its tests.

It serves a model tree the way the Hub exposes it: each model carries the tags
`base_model:<parent>` and `base_model:<relation>:<parent>` (relation finetune, adapter, merge or
quantized). Routes, as `huggingface_hub.HfApi` calls them:

- `GET /api/models?filter=...&sort=downloads&limit=...&expand=...`: models carrying every
  `filter` tag, paginated with a `Link: <url>; rel="next"` header (opaque `cursor`, as the Hub);
- `GET /api/models/{org}/{name}` (and `/api/models/{name}`): one model, or 404 with
  `X-Error-Code: RepoNotFound`, which huggingface_hub raises as `RepositoryNotFoundError`.

`expand` values the real list endpoint refuses (`baseModels`, `childrenModelCount`,
`usedStorage`: huggingface_hub's type still lists them) are a 400 here too.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import web

from gemfinder.errors import UserError

RELATIONS = ("finetune", "adapter", "merge", "quantized")
_EXPAND_MODEL = frozenset(
    "author baseModels cardData childrenModelCount config createdAt disabled downloads "
    "downloadsAllTime evalResults gated gguf inference inferenceProviderMapping lastModified "
    "library_name likes mask_token model-index pipeline_tag private resourceGroup safetensors "
    "sha siblings spaces tags transformersInfo trendingScore usedStorage widgetData".split()
)
_NOT_IN_LISTS = frozenset({"baseModels", "childrenModelCount", "usedStorage"})
_LIST_DEFAULT = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                 "library_name", "createdAt")  # fmt: skip
_CREATED = "2024-09-01T00:00:00.000Z"


@dataclass(frozen=True)
class HubModel:
    """One repository: its id, 30-day downloads, parents as (relation, parent id), extra tags."""

    id: str
    downloads: int = 0
    parents: tuple[tuple[str, str], ...] = ()
    extra_tags: tuple[str, ...] = ()

    @property
    def author(self) -> str | None:
        return self.id.split("/", 1)[0] if "/" in self.id else None

    @property
    def tags(self) -> list[str]:
        tags = ["transformers", "safetensors", *self.extra_tags, "text-generation"]
        tags += [f"base_model:{parent}" for _, parent in self.parents]
        tags += [f"base_model:{relation}:{parent}" for relation, parent in self.parents]
        return tags

    def record(self, fields: Iterable[str]) -> dict:
        """The JSON object the Hub returns with these fields (`_id` and `id` always)."""
        digest = hashlib.sha1(self.id.encode()).hexdigest()
        values = {
            "author": self.author,
            "baseModels": (
                {"relation": self.parents[0][0], "models": [{"id": p} for _, p in self.parents]}
                if self.parents
                else None
            ),
            "childrenModelCount": 0,
            "createdAt": _CREATED,
            "lastModified": _CREATED,
            "disabled": False,
            "downloads": self.downloads,
            "downloadsAllTime": self.downloads * 6,
            "gated": False,
            "library_name": "transformers",
            "likes": int(self.downloads**0.5) // 10,
            "pipeline_tag": "text-generation",
            "private": False,
            "sha": digest,
            "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}],
            "tags": self.tags,
            "trendingScore": 0,
        }
        out = {"_id": digest[:24], "id": self.id}
        for name in fields:
            if name in values:
                out[name] = values[name]
        return out


def models_from_tree(
    ids: Sequence[str],
    downloads: Sequence[float],
    parent: Sequence[int],
    relation: Sequence[str],
) -> list[HubModel]:
    """Hub repositories of a tree given by parent row indices (-1: root) and relations."""
    out = []
    for k, model_id in enumerate(ids):
        p = int(parent[k])
        parents = () if p < 0 else ((str(relation[k]), ids[p]),)
        out.append(HubModel(model_id, int(downloads[k]), parents))
    return out


def models_from_synthetic(tree) -> list[HubModel]:
    """The repositories of a `gemfinder.sim.trees.SyntheticTree` (light-touch steps: adapters)."""
    matrix = tree.matrix
    downloads = matrix.downloads if matrix.downloads is not None else np.zeros(matrix.n_models)
    return models_from_tree(matrix.models, downloads, tree.tree.parent, tree.relations)


def load_hub_models(path: str | Path, field: str = "--tree") -> list[HubModel]:
    """The model tree in an .npz written by `gemfinder trees generate` (arrays `parent`,
    `relation` beside the matrix's `models` and `downloads`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(field, f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("models", "parent", "relation") if k not in archive]
            if missing:
                raise UserError(
                    field,
                    f"{path.name} has no {', '.join(missing)} array (no tree): write it again "
                    "with `gemfinder trees generate`",
                )
            ids = [str(x) for x in archive["models"]]
            parent = archive["parent"].astype(np.int64)
            relation = [str(x) for x in archive["relation"]]
            downloads = archive["downloads"] if "downloads" in archive else np.zeros(len(ids))
    except (OSError, ValueError) as err:
        raise UserError(field, f"cannot read {path.name}: {err}") from None
    if not len(ids) == len(parent) == len(relation) == len(downloads):
        raise UserError(field, f"{path.name}: models, parent, relation differ in length")
    if ((parent < -1) | (parent >= len(ids))).any():
        raise UserError(field, f"{path.name}: 'parent' holds a row index out of range")
    bad = sorted({r for r, p in zip(relation, parent, strict=True) if p >= 0} - set(RELATIONS))
    if bad:
        raise UserError(field, f"{path.name}: unknown relation {bad[0]!r}")
    return models_from_tree(ids, downloads, parent, relation)


@dataclass
class HubState:
    """What the stand-in saw, for tests; `script` answers the next requests with these
    statuses (None: serve normally), e.g. `[None, 429]` rate-limits the second request."""

    requests: Counter = field(default_factory=Counter)  # route -> count
    pages: Counter = field(default_factory=Counter)  # list requests with a cursor
    authorization: Counter = field(default_factory=Counter)
    script: list[int | None] = field(default_factory=list)


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f'{{"offset":{offset}}}'.encode()).decode().rstrip("=")


def _offset(cursor: str) -> int:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    if not (raw.startswith('{"offset":') and raw.endswith("}")):
        raise ValueError(cursor)
    return int(raw[len('{"offset":') : -1])


def make_hub_app(
    models: Iterable[HubModel], page_size: int = 1000, state: HubState | None = None
) -> web.Application:
    """The aiohttp app; `page_size` caps every page (the Hub's is 1000; small in tests)."""
    models = list(models)
    by_id = {m.id: m for m in models}
    if len(by_id) != len(models):
        raise ValueError("model ids must be unique")
    by_tag: dict[str, list[int]] = {}
    for index, model in enumerate(models):
        for tag in model.tags:
            by_tag.setdefault(tag, []).append(index)
    state = state if state is not None else HubState()

    def scripted(request: web.Request, route: str) -> web.Response | None:
        state.requests[route] += 1
        state.authorization[request.headers.get("Authorization", "")] += 1
        status = state.script.pop(0) if state.script else None
        if status == 429:
            return web.json_response(
                {"error": "You have been rate-limited; retry later."},
                status=429,
                headers={"Retry-After": "0", "RateLimit": '"api";r=0;t=0'},
            )
        if status is not None:
            return _error(status, f"scripted {status}")
        return None

    def expand_of(request: web.Request, listing: bool) -> tuple[str, ...] | web.Response:
        expand = request.query.getall("expand", []) + request.query.getall("expand[]", [])
        for name in expand:
            if name not in _EXPAND_MODEL or (listing and name in _NOT_IN_LISTS):
                return _error(400, f'Invalid expand value "{name}"', "BadRequest")
        if expand:
            return tuple(expand)
        return _LIST_DEFAULT if listing else tuple(sorted(_EXPAND_MODEL - _NOT_IN_LISTS))

    def admitted(request: web.Request, route: str) -> tuple[str, ...] | web.Response:
        """The fields a request may expand, or the response refusing it (scripted faults
        first, then expand values its route does not accept)."""
        failed = scripted(request, route)
        return failed if failed is not None else expand_of(request, listing=route == "list")

    async def list_models(request: web.Request) -> web.Response:
        fields = admitted(request, "list")
        if isinstance(fields, web.Response):
            return fields
        query = request.query
        filters = query.getall("filter", [])
        if filters:
            hits = set(by_tag.get(filters[0], ()))
            for tag in filters[1:]:
                hits &= set(by_tag.get(tag, ()))
            rows = [models[i] for i in sorted(hits)]
        else:
            rows = list(models)
        if author := query.get("author"):
            rows = [m for m in rows if m.author == author]
        if search := query.get("search"):
            rows = [m for m in rows if search.lower() in m.id.lower()]
        if query.get("sort") == "downloads":
            rows.sort(key=lambda m: -m.downloads)  # stable: ties keep the tree order
        try:
            size = min(page_size, int(query.get("limit", page_size)))
            offset = _offset(query["cursor"]) if "cursor" in query else 0
        except ValueError:
            return _error(400, "Invalid limit or cursor", "BadRequest")
        if size < 1 or offset < 0:
            return _error(400, "Invalid limit or cursor", "BadRequest")
        if "cursor" in query:
            state.pages["list"] += 1
        headers = {}
        if offset + size < len(rows):
            following = request.url.update_query({"cursor": _cursor(offset + size)})
            headers["Link"] = f'<{following}>; rel="next"'
        page = [m.record(fields) for m in rows[offset : offset + size]]
        return web.json_response(page, headers=headers)

    async def model_info(request: web.Request) -> web.Response:
        fields = admitted(request, "info")
        if isinstance(fields, web.Response):
            return fields
        info = request.match_info
        repo_id = f"{info['org']}/{info['name']}" if "org" in info else info["name"]
        model = by_id.get(repo_id)
        if model is None:
            return _error(404, "Repository not found", "RepoNotFound")
        record = model.record(fields)
        if "childrenModelCount" in record:
            record["childrenModelCount"] = sum(
                1 for m in models if any(p == repo_id for _, p in m.parents)
            )
        return web.json_response(record)

    app = web.Application()
    app.router.add_get("/api/models", list_models)
    app.router.add_get("/api/models/{org}/{name}", model_info)
    app.router.add_get("/api/models/{name}", model_info)
    return app


class Hub:
    """Use as `async with Hub(models) as hub:`; `hub.url` is the endpoint, `hub.state` counts."""

    def __init__(
        self,
        models: Iterable[HubModel],
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 1000,
    ) -> None:
        self.state = HubState()
        self._app = make_hub_app(models, page_size=page_size, state=self.state)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Hub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
