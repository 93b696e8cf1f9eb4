"""Adapters on demand on vLLM (issue 17): registered before they are asked, within the
endpoint's host-memory cache, and unregistered once no search needs them, through vLLM's
runtime LoRA API.

An endpoint's settings may list `lora_paths` (adapter name -> path on the vLLM server; vLLM must
run with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). The operator, not the caller, names the paths:
a request can only pick among them by adapter id, so no caller makes a server read a path of its
choosing.

- A query holds its adapter (`held`) from before it is sent until its answer is in. Before the
  first query `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` registers it; vLLM's 400
  "has already been loaded" means someone else registered it: gemfinder uses it and never
  unregisters it.
- At most `max_cpu_loras` (the endpoint's `cost` block; no cap without one) of gemfinder's own
  registrations at once per endpoint (oracles.lora_slots): one more first unregisters the least
  recently used one no query holds; when every one is held the query waits for one to be let go
  instead of overrunning the cap. The waiters are served in arrival order, and a bounded number
  of newer queries on held registrations go before the oldest (none starves).
- A search claims its candidates' adapters (`claim`) and lets go of them when it eliminates
  them and when it ends, whatever the end (`release`): an adapter no search claims is
  unregistered (`POST /v1/unload_lora_adapter`) once no query holds it. `aclose` (shutdown)
  unregisters every one left.
- A load that fails fails the queries of that adapter (HTTP_ERROR, counted as failures, never as
  wrong answers), at once and without asking the server again while a search claims it (a later
  search asks again: the operator may have fixed the path); one that did not reach the server,
  or that the server failed (HTTP 5xx), fails that query only.

One instance per process (the InferenceOracle's; with oracle worker processes, the parent's), so
the cap holds across every search of the process that shares the endpoint: the host-memory
cache it protects is the server's, one for all its clients. Replicas (processes sharing one
store) share the cap and who uses what through the store (`share`, gemfinder.lora_leases): a
registration takes a slot only when the endpoint's shared count is under the cap, one another
live replica uses is never unregistered (the last user unregisters it), and a dead replica's
are taken over once its lease expires. The store is asked when a registration starts or ends,
never for a query on a registration this process already holds (the heartbeat keeps its leases).
Without a store (or a name unregistered by someone outside gemfinder), a name found gone by a
query (`lost`) is registered again by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable

import aiohttp

from gemfinder.lora_leases import Grant, LoraLeases, Release
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.lora_slots import Slots, Step, Ticket

log = logging.getLogger(__name__)

LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"
ALREADY = "has already been loaded"  # vLLM's 400 for a name registered before
MAX_REPLY_BYTES = 4096
UNLOAD_TIMEOUT_S = 10.0  # unregistering is bookkeeping on the server: quick, or it is down
POLL_S = 0.1  # a query short of a slot other replicas hold asks the store again after this
MAX_ORPHANS = 8  # dead replicas' registrations one heartbeat unregisters per endpoint


def _metrics():  # noqa: ANN202 - the module gemfinder.metrics
    # Imported here: gemfinder.metrics imports gemfinder.oracles, which imports this module.
    from gemfinder import metrics

    return metrics


def _count(kind: str) -> None:
    _metrics().LORA_REGISTRATIONS.labels(kind).inc()


class RuntimeAdapters:
    def __init__(self, timeout_s: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._unload_timeout = aiohttp.ClientTimeout(total=min(timeout_s, UNLOAD_TIMEOUT_S))
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[str, Slots] = {}
        self._configs: dict[str, EndpointConfig] = {}
        self._tasks: set[asyncio.Task[str | None]] = set()
        self.loads = 0
        self.unloads = 0
        # Shared with the other replicas of the store (`share`); None: this process alone.
        self.leases: LoraLeases | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._since: dict[tuple[str, str], float] = {}  # when each lease of ours was taken
        self._evicting: set[tuple[str, str]] = set()  # dead replicas' registrations we remove
        self._gone: set[tuple[str, str]] = set()  # found unregistered by a query (`lost`)
        self.leases_lost = 0  # registrations another replica took over while we stalled

    def share(self, leases: LoraLeases) -> None:
        """Count the cap, and decide unregistrations, with the other replicas of a store."""
        self.leases = leases

    @staticmethod
    def on_demand(config: EndpointConfig | None, adapter_id: str | None) -> bool:
        return bool(config and config.lora_paths and adapter_id in config.lora_paths)

    def _at(self, config: EndpointConfig) -> Slots:
        slots = self._slots.get(config.key)
        if slots is None:
            cap = config.cost.cpu_capacity if config.cost is not None else None
            slots = self._slots[config.key] = Slots(cap)
        self._configs[config.key] = config
        return slots

    def registered_by_us(self, endpoint: str) -> set[str]:
        slots = self._slots.get(endpoint.rstrip("/"))
        return set(slots.ours) if slots else set()

    def most_held(self, endpoint: str) -> int:
        """Most registration slots gemfinder held at once on the endpoint (never above its cap)."""
        slots = self._slots.get(endpoint.rstrip("/"))
        return slots.most_held if slots else 0

    # queries ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def held(self, config: EndpointConfig, name: str) -> AsyncIterator[str | None]:
        """Hold `name` registered while the body runs; yields None, or why it cannot be."""
        slots = self._at(config)
        ticket = slots.enter(name)
        try:
            yield await self._acquire(config, slots, ticket)
        finally:
            if slots.leave(ticket):
                slots.wake()  # it may be evicted now, or another waiter is the oldest
                if slots.to_retire(name):
                    slots.begin_unload(name)
                    self._start(self._unload(config, slots, name))

    async def _acquire(self, config: EndpointConfig, slots: Slots, ticket: Ticket) -> str | None:
        waited: list[float] = []  # each wait for a slot, in seconds (the histogram's sum)
        try:
            return await self._steps(config, slots, ticket, waited)
        finally:
            if waited:  # cancelled while waiting too: it waited that long
                _metrics().LORA_SLOT_WAIT.observe(sum(waited))

    async def _steps(
        self, config: EndpointConfig, slots: Slots, ticket: Ticket, waited: list[float]
    ) -> str | None:
        name = ticket.name
        while True:
            step, detail = slots.step(ticket)
            if step is Step.READY:
                return None
            if step is Step.FAILED:
                return detail
            if step is Step.WAIT:
                # For a slot, not for its own name's registration or unregistration under way.
                for_slot = name not in slots.loading and name not in slots.unloading
                if for_slot and not waited:
                    _count("waited")
                began = time.monotonic()
                try:
                    await self._wait(slots)
                finally:
                    if for_slot:
                        waited.append(time.monotonic() - began)
            elif step is Step.LOAD:
                slots.wake()  # out of the queue: the next waiter is the oldest now
                problem = await self._spawn(self._load(config, slots, name))
                if problem is not None:
                    return problem
            else:  # Step.UNLOAD: a slot for `name` once the victim is out
                assert detail is not None
                problem = await self._spawn(self._unload(config, slots, detail))
                if problem is not None:
                    return f"no registration slot for adapter {name!r}: {problem}"[:500]

    async def _wait(self, slots: Slots) -> None:
        """Until a change here; or, when other replicas hold slots, a poll's time at most: their
        changes wake nobody here, so the store is asked again (`outside` forgotten)."""
        if not slots.outside:
            await slots.wait()
            return
        try:
            await asyncio.wait_for(slots.wait(), POLL_S)
        except TimeoutError:
            slots.outside = 0

    def lost(self, config: EndpointConfig, name: str) -> None:
        """The server answered that `name` does not exist: someone unregistered it. The next
        query registers it again."""
        slots = self._at(config)
        if name not in slots.loading and name not in slots.unloading:
            slots.ready.discard(name)
            slots.ours.pop(name, None)
            self._gone.add((config.key, name))  # the store's "registered" is wrong: load it
            slots.wake()

    # searches ---------------------------------------------------------------------------------
    def claim(self, config: EndpointConfig, names: Iterable[str]) -> None:
        """A search will ask these adapters: none is unregistered while it claims it."""
        slots = self._at(config)
        for name in names:
            slots.claims[name] += 1
            slots.retiring.discard(name)

    async def release(self, config: EndpointConfig, names: Iterable[str]) -> None:
        """A search is done with these adapters: those of them gemfinder registered that no
        search claims are unregistered, now or once the last query holding one ends. A
        registration still under way (its query cancelled with the search) is waited for, so
        that it is unregistered here too rather than left behind."""
        slots = self._at(config)
        for name in dict.fromkeys(names):
            if slots.claims[name] > 0:
                slots.claims[name] -= 1
            if not slots.claims[name]:
                del slots.claims[name]
                slots.retiring.add(name)
                slots.failed.pop(name, None)  # the next search asks the server again
        while any(n in slots.loading and not slots.demand[n] for n in slots.retiring):
            await slots.wait()  # every registration's end wakes the waiters
        gone = [name for name in list(slots.retiring) if slots.to_retire(name)]
        for name in gone:
            slots.begin_unload(name)
        await asyncio.gather(*(self._spawn(self._unload(config, slots, n)) for n in gone))

    # requests ---------------------------------------------------------------------------------
    def _start(self, work: Awaitable[str | None]) -> asyncio.Task[str | None]:
        """Run a registration change as a task of its own, to its end even if the query that
        asked for it is cancelled, so the bookkeeping always matches the server (`aclose`
        waits for the ones still running)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn(self, work: Awaitable[str | None]) -> asyncio.Future[str | None]:
        """`_start`, for a caller that waits for it (and may be cancelled meanwhile)."""
        return asyncio.shield(self._start(work))

    async def _post(
        self, config: EndpointConfig, path: str, body: dict, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {config.bearer}"}
        async with self._session.post(
            config.key + path, json=body, headers=headers, timeout=timeout
        ) as resp:
            # vLLM's answers are a line of text: read no more, whatever the server sends.
            reply = await resp.content.read(MAX_REPLY_BYTES)
            return resp.status, reply.decode("utf-8", "replace")

    async def _load(self, config: EndpointConfig, slots: Slots, name: str) -> str | None:
        assert config.lora_paths is not None
        path = config.lora_paths[name]
        shared = False
        if self.leases is not None:
            try:
                decision = await self._grant(config, slots, name)
            except BaseException:
                slots.loading.discard(name)
                slots.wake()
                raise
            if decision is None:
                _count("failed")
                return f"registering adapter {name!r} on {config.key}: the store is unavailable"
            if decision.grant is not Grant.LOAD:
                return None  # registered by a replica, or no slot yet: the query steps again
            shared = decision.shared
        ours: bool | None = False
        problem = None
        try:
            status, text = await self._post(
                config, LOAD, {"lora_name": name, "lora_path": path}, self._timeout
            )
        except (aiohttp.ClientError, TimeoutError) as err:  # not memoised: the server may recover
            await self._settle(config, name, registered=False)
            slots.loading.discard(name)
            slots.wake()
            _count("failed")
            return f"registering adapter {name!r} on {config.key} failed: {err!r}"[:500]
        except BaseException:
            slots.loading.discard(name)
            slots.wake()
            raise
        if status == 200:
            ours = True
            self.loads += 1
            _count("registered")
        elif status == 400 and ALREADY in text:
            ours = None  # registered by a replica (ours to share), or someone else's: the store
        else:
            problem = (
                f"registering adapter {name!r} ({path}) on {config.key} failed: HTTP "
                f"{status}: {text}"
            )[:500]
            _count("failed")
        ours = await self._settle(config, name, registered=ours, shared=shared)
        if problem is not None and status >= 500:  # the server's trouble: not memoised
            slots.loading.discard(name)
            slots.wake()
            return problem
        slots.loaded(name, ours, problem)
        slots.wake()
        return problem

    async def _grant(self, config: EndpointConfig, slots: Slots, name: str):  # noqa: ANN202
        """The store's decision for registering `name` (gemfinder.lora_leases), acted on here
        but for LOAD; None: the store failed (the slot given back)."""
        assert self.leases is not None
        try:
            while True:
                gone = (config.key, name) in self._gone
                decision = await self.leases.acquire(config.key, name, slots.cap, gone)
                if decision.grant is not Grant.WAIT:
                    break
                await asyncio.sleep(POLL_S)  # another replica unregisters it: then it is free
        except Exception as err:  # noqa: BLE001 - the database unreachable: this query fails
            log.warning("adapter %r on %s: the store's registrations: %s", name, config.key, err)
            slots.loading.discard(name)
            slots.wake()
            return None
        key = (config.key, name)
        self._since[key] = time.monotonic()
        if decision.grant is Grant.LOAD:
            self._gone.discard(key)
        self._keep_leases()
        slots.outside = decision.outside
        if decision.grant is Grant.READY:  # another replica registered it: use it
            slots.loaded(name, True, None)
        elif decision.grant is Grant.FULL:  # the others hold the rest: none of it is ours
            slots.loading.discard(name)
            assert slots.cap is not None
            slots.outside = max(decision.outside, slots.cap - slots.held)
        elif decision.grant is Grant.EVICT:  # a dead replica's registration goes first
            slots.loading.discard(name)
            assert decision.victim is not None
            await self._evict(config, decision.victim)
        if decision.grant is not Grant.LOAD:
            slots.wake()
        return decision

    async def _settle(
        self, config: EndpointConfig, name: str, registered: bool | None, shared: bool = False
    ) -> bool:
        """Tell the store how our registration ended (`LoraLeases.loaded`); whether the name
        is gemfinder's to unregister. None (found registered already): the store says whether
        a replica registered it; without a store, someone else's; with the store unreachable,
        what its decision said (`shared`)."""
        if self.leases is None:
            return bool(registered)
        try:
            return await self.leases.loaded(config.key, name, registered, shared)
        except Exception as err:  # noqa: BLE001 - the row stays 'loading' until it expires
            log.warning("adapter %r on %s: registration not recorded: %s", name, config.key, err)
            return shared if registered is None else registered

    async def _evict(self, config: EndpointConfig, victim: str) -> None:
        """Unregister a dead replica's registration, which the store handed us (EVICT)."""
        assert self.leases is not None
        key = (config.key, victim)
        self._evicting.add(key)
        try:
            gone, problem = await self._unregister(config, victim)
            if problem is not None:
                log.warning("%s", problem)
            await self.leases.unloaded(config.key, victim, gone)
        except Exception as err:  # noqa: BLE001 - its row expires: the next replica tries
            log.warning("adapter %r on %s: not evicted: %s", victim, config.key, err)
        finally:
            self._evicting.discard(key)

    async def _unregister(self, config: EndpointConfig, name: str) -> tuple[bool, str | None]:
        """POST the unload: (gone from the server, why not)."""
        gone, problem = False, None
        try:
            status, text = await self._post(
                config, UNLOAD, {"lora_name": name}, self._unload_timeout
            )
            gone = status in (200, 404)  # 404: gone already (someone unloaded it)
            if status == 200:
                self.unloads += 1
                _count("unregistered")
            if not gone:
                problem = f"HTTP {status}: {text}"
        except (aiohttp.ClientError, TimeoutError) as err:
            problem = repr(err)
        if problem is not None:
            problem = f"unregistering adapter {name!r} on {config.key} failed: {problem}"[:500]
        return gone, problem

    async def _unload(self, config: EndpointConfig, slots: Slots, name: str) -> str | None:
        gone, problem = False, None
        try:
            if self.leases is not None:
                verdict = await self.leases.release(config.key, name)
                if verdict is not Release.LAST:  # another replica uses it, or took it over
                    self._since.pop((config.key, name), None)
                    gone = True  # for this process: no longer its registration
                    return None
            gone, problem = await self._unregister(config, name)
            if self.leases is not None:
                if gone:
                    self._since.pop((config.key, name), None)
                    await self.leases.unloaded(config.key, name, True)
                else:
                    await self.leases.kept(config.key, name)
        except Exception as err:  # noqa: BLE001 - the store unreachable: it stays registered
            problem = f"unregistering adapter {name!r} on {config.key}: {err}"[:500]
        finally:
            slots.unloaded(name, gone)
            slots.wake()
        if problem is not None:
            log.warning("%s", problem)
        return problem

    # the shared leases' heartbeat -------------------------------------------------------------
    def _keep_leases(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._heartbeats())

    async def _heartbeats(self) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.lease_s / 3)
            try:
                await self.renew()
            except Exception as err:  # noqa: BLE001 - the database unreachable: next beat
                log.warning("adapter leases not renewed: %s", err)

    async def renew(self) -> None:
        """Extend our leases; forget the registrations whose lease another replica took over
        while this one stalled (the next query asks the store again), drop rows this process
        no longer uses (a registration found gone by a query), and unregister the endpoints'
        registrations no live replica holds (a dead one's)."""
        assert self.leases is not None
        started = time.monotonic()
        held = await self.leases.renew()
        for key, slots in self._slots.items():
            for name in list(slots.ours):
                busy = name in slots.loading or name in slots.unloading
                if (key, name) in held or busy or self._since.get((key, name), 0) > started:
                    continue
                log.warning("adapter %r on %s: lease taken over by another replica", name, key)
                self.leases_lost += 1
                _metrics().LORA_LEASES_LOST.inc()
                slots.ours.pop(name, None)
                slots.ready.discard(name)
                slots.wake()
        for key, name in held:
            slots = self._slots.get(key)
            mine = slots is not None and (
                name in slots.ours or name in slots.loading or name in slots.unloading
            )
            if mine or (key, name) in self._evicting or self._since.get((key, name), 0) > started:
                continue
            await self.leases.loaded(key, name, registered=False)  # a stray row of ours goes
        for key in list(self._slots):  # a dead replica's registrations: unregistered now
            for _ in range(MAX_ORPHANS):
                victim = await self.leases.adopt_orphan(key)
                if victim is None:
                    break
                await self._evict(self._configs[key], victim)

    async def aclose(self) -> None:
        """Shutdown: every registration of gemfinder's that is left is unregistered."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        work = []
        for key, slots in self._slots.items():
            for name in [n for n in slots.ours if n not in slots.unloading]:
                slots.begin_unload(name)
                work.append(self._unload(self._configs[key], slots, name))
        await asyncio.gather(*work, return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._session is not None:
            await self._session.close()
            self._session = None
