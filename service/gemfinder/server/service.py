"""ModelSearchService handlers: thin proto <-> domain glue around the SearchManager.

Errors are raised, not aborted here: the ErrorInterceptor maps them through one table.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math

from gemfinder import bounded_json
from gemfinder.errors import UserError
from gemfinder.search import events as ev
from gemfinder.search import plan, plan_incremental
from gemfinder.search.manager import SearchManager, TooManySearches
from gemfinder.server import convert
from gemfinder.server.errors import ServiceError
from gemfinder.tasks import Item
from gemfinder.tasks.lmeval import patterns as lm_eval_patterns
from gemfinder.tasks.lmeval.catalog import Catalog
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

EVENT_TYPES = {
    ev.SNAPSHOT: pb.EVENT_TYPE_SNAPSHOT,
    ev.ROUND_STARTED: pb.EVENT_TYPE_ROUND_STARTED,
    ev.PROGRESS: pb.EVENT_TYPE_PROGRESS,
    ev.ROUND_FINISHED: pb.EVENT_TYPE_ROUND_FINISHED,
    ev.FINISHED: pb.EVENT_TYPE_FINISHED,
}
DEFAULT_PAGE, MAX_PAGE = 50, 500
# Plans simulated at once (each takes a core for up to seconds); more: RESOURCE_EXHAUSTED.
MAX_PLANS = 2


def _margin(remaining: float) -> float:
    """Time kept to send the DEADLINE_EXCEEDED answer: 10% of the deadline, 0.1-1 s."""
    return min(max(0.1 * remaining, 0.1), 1.0)


class ModelSearchService(pb_grpc.ModelSearchServiceServicer):
    def __init__(
        self,
        manager: SearchManager,
        query_sets: dict[str, list[Item]],
        default_per_model: int,
        limits,
        lm_eval: Catalog | None = None,
    ) -> None:
        self.manager = manager
        self.query_sets = query_sets
        self.default_per_model = default_per_model
        self.limits = limits
        # (not `or`: a catalog without tasks is falsy, yet its --lm-eval-include still counts)
        self.lm_eval = lm_eval if lm_eval is not None else Catalog({})
        self._plans = 0  # PlanSearch calls simulating now

    async def _spec(self, request):
        """The request's spec, resolved and validated (a start's and a plan's alike)."""
        built = None
        if request.spec.query_set.WhichOneof("source") == "lm_eval":
            req = convert.lm_eval_request(request.spec.query_set.lm_eval, self.limits)
            self.lm_eval.check(req, convert.LM_EVAL_FIELD)  # unregistered: refused at once
            # Building runs lm-eval (seconds the first time): off the event loop.
            built = await asyncio.to_thread(self.lm_eval.items, req, convert.LM_EVAL_FIELD)
        patterns = frozenset()
        if convert.has_inline_lm_eval(request.spec):
            # The regular expressions lm-eval ships (a YAML scan the first time): off the loop.
            patterns = await asyncio.to_thread(lm_eval_patterns.allowed, self.lm_eval.include)
        # Converting and validating a 1,000-model spec takes ~20 ms of CPU: on a worker
        # thread, so that the loop keeps answering health checks (the GIL still passes back
        # every 5 ms). Safe: it reads only this call's request and objects no one mutates
        # (the registered query sets, the limits, the patterns) and builds a new spec.
        return await asyncio.to_thread(
            convert.spec_from_proto,
            request.spec,
            self.query_sets,
            self.default_per_model,
            self.limits,
            built,
            patterns,
        )

    async def _start(self, request):
        spec = await self._spec(request)
        # A start in progress when this replica begins to stop ends with UNAVAILABLE, which
        # the client's retry policy sends to another replica (the request id keeps it one).
        start = self.manager.start(spec, convert.request_id(request.request_id))
        return await self.manager.unless_stopping(start)

    async def SelectBestModel(self, request, context):
        row = await self._start(request)
        remaining = context.time_remaining()
        try:
            # Answer just before the caller's deadline so the status (and the search id in the
            # message) reaches it; the search keeps running, as the proto promises.
            row = await asyncio.wait_for(
                self.manager.wait(row.id),
                None if remaining is None else max(remaining - _margin(remaining), 0.0),
            )
        except TimeoutError:
            raise ServiceError(
                "deadline_exceeded",
                f"deadline reached; search {row.id} keeps running: GetSearch, WatchSearch, "
                "or SelectBestModel again with the same request_id",
            ) from None
        if row.state == "cancelled":
            raise ServiceError("cancelled", f"search {row.id} was cancelled")
        if row.state == "failed":
            raise ServiceError("aborted", f"search {row.id} failed: {row.error}")
        return pb.SelectBestModelResponse(search=await _search_to_proto(row))

    async def StartSearch(self, request, context):
        row = await self._start(request)
        return pb.StartSearchResponse(search=await _search_to_proto(row))

    def _id(self, search_id: str) -> str:
        if not search_id:
            raise UserError("search_id", "required")
        return search_id

    async def GetSearch(self, request, context):
        row = await self.manager.fetch(self._id(request.search_id))
        return pb.GetSearchResponse(search=await _search_to_proto(row))

    async def CancelSearch(self, request, context):
        search_id = self._id(request.search_id)
        remaining = context.time_remaining()
        try:
            # On a replica that does not own the search, the owner cancels at its next lease
            # renewal: answered before the caller's deadline if that takes longer.
            row = await asyncio.wait_for(
                self.manager.cancel(search_id),
                None if remaining is None else max(remaining - _margin(remaining), 0.0),
            )
        except TimeoutError:
            raise ServiceError(
                "deadline_exceeded",
                f"deadline reached; the cancel of search {search_id} is recorded and its owner "
                "stops it at its next lease renewal: GetSearch or WatchSearch shows when",
            ) from None
        return pb.CancelSearchResponse(search=await _search_to_proto(row))

    async def WatchSearch(self, request, context):
        search_id = self._id(request.search_id)
        after = request.after_sequence if request.HasField("after_sequence") else None
        async for event in self.manager.watch(search_id, after):
            msg = pb.WatchSearchResponse(
                type=EVENT_TYPES[event.type],
                progress=convert.progress_to_proto(event.progress),
                state=convert.STATES.get(event.state, pb.SEARCH_STATE_UNSPECIFIED),
                sequence=event.seq,
            )
            if event.type == ev.FINISHED:
                msg.search.CopyFrom(await _search_to_proto(await self.manager.fetch(search_id)))
            yield msg

    async def PlanSearch(self, request, context):
        if request.trials < 0:
            raise UserError("trials", f"must be 0 (the default, {plan.DEFAULT_TRIALS}) or "
                            f"1-{plan.MAX_TRIALS}, got {request.trials}")  # fmt: skip
        spec = await self._spec(request)
        # Validated as a start is, up to the connection: a plan never opens one.
        self.manager.check_allowed(spec)
        oracle = self.manager.oracle
        configs = getattr(oracle, "configs", {})
        cached = None
        if spec.ask is not None:
            # The pool a start narrows it to (refused as a start refuses it) and the parent's
            # answers its runner will find in the evaluation cache: store reads (tens of ms at
            # 1,000 models), on a worker thread as a start's narrowing (Store.off_loop).
            store = self.manager.store
            spec, cached = await store.off_loop(plan_incremental.narrowed, store, spec, oracle)
        # The candidates checked as the oracle's start checks them (an oracle answering from a
        # matrix checks none), without the probe (--workers: the parent's oracle checks).
        if getattr(getattr(oracle, "local", oracle), "validate", False):
            plan.check_offline(spec, configs)
        trials = request.trials or plan.DEFAULT_TRIALS
        plan.check_size(spec, trials)
        if self._plans >= MAX_PLANS:
            raise TooManySearches(f"{MAX_PLANS} plans are running; retry later")
        self._plans += 1
        try:  # seconds of CPU at most (search.plan's bounds): off the event loop
            found = await asyncio.to_thread(plan.plan, spec, configs, trials, cached)
        finally:
            self._plans -= 1
        return pb.PlanSearchResponse(plan=convert.plan_to_proto(found))

    async def ListSearches(self, request, context):
        if request.page_size < 0:
            raise UserError("page_size", "must be >= 0")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = _decode_token(request.page_token) if request.page_token else None
        if (
            request.state != pb.SEARCH_STATE_UNSPECIFIED
            and request.state not in convert.STATE_NAMES
        ):
            # proto3 keeps unknown enum numbers: 99 must not read as "any state"
            known = ", ".join(pb.SearchState.keys())
            raise UserError("state", f"unknown value {request.state} (known: {known})")
        state = convert.STATE_NAMES.get(request.state)
        rows = self.manager.list(
            size + 1, after, state=state, request_id=request.request_id or None
        )
        page, more = rows[:size], len(rows) > size
        token = _encode_token(page[-1].created, page[-1].id) if more else ""
        return pb.ListSearchesResponse(
            searches=[convert.search_to_proto(r, with_result=False) for r in page],
            next_page_token=token,
        )


async def _search_to_proto(row) -> pb.Search:
    """The search as a message; one with a result on a worker thread: its ranking, overall
    and per-task estimates are up to 7 messages per model, ~20 ms of CPU at 1,000 models.
    Safe: `row` was just read from the store for this call and nothing else holds it."""
    if row.result is None:
        return convert.search_to_proto(row)
    return await asyncio.to_thread(convert.search_to_proto, row)


def _encode_token(created: float, search_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created, search_id]).encode()).decode()


def _decode_token(token: str) -> tuple[float, str]:
    try:
        # A token this server wrote is [created, search_id]: depth 1.
        created, search_id = bounded_json.loads(base64.urlsafe_b64decode(token.encode()), 1)
        if not isinstance(created, int | float) or not isinstance(search_id, str):
            raise TypeError
        if not math.isfinite(created):
            raise ValueError
        return float(created), search_id
    except (ValueError, TypeError):
        raise UserError("page_token", "malformed; pass next_page_token unchanged") from None
