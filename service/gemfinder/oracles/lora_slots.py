"""Which adapter registrations gemfinder holds on one vLLM endpoint, within its host-memory cap.

Bookkeeping only, no I/O: gemfinder.oracles.lora_runtime asks `step` what a query for an
adapter must do next and reports what its requests did. A registration slot is held by each
name gemfinder registered there (`ours`, least recently used first) and by each registration in
flight; there are at most `cap` of them (the endpoint's `max_cpu_loras`; None: no cap). When a
query needs one more and every slot is held, the least recently used of ours that no query
waits for or uses (`demand`) is unregistered first; when all of them are in use the query
waits. Names the server had already (`--lora-modules`, someone else's) are used and take no
slot: gemfinder never unregisters them.

`claims` counts the searches that still have a name among their candidates: a search that ends
or eliminates a candidate drops its claim, and the name is unregistered once no search claims
it and no query uses it (`retiring` holds those still in use).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from enum import Enum


class Step(Enum):
    READY = "ready"  # registered: ask it
    FAILED = "failed"  # its registration failed: the query fails
    LOAD = "load"  # register it (a slot is reserved)
    UNLOAD = "unload"  # unregister the victim first, then ask again
    WAIT = "wait"  # every slot in use, or the name is being (un)registered: wait for a change


@dataclass
class Slots:
    """One endpoint's registrations (see the module docstring)."""

    cap: int | None
    ours: OrderedDict[str, None] = field(default_factory=OrderedDict)
    ready: set[str] = field(default_factory=set)  # registered there, by anyone
    failed: dict[str, str] = field(default_factory=dict)  # name -> why its load failed
    demand: Counter[str] = field(default_factory=Counter)  # queries waiting for or using it
    claims: Counter[str] = field(default_factory=Counter)
    retiring: set[str] = field(default_factory=set)
    loading: set[str] = field(default_factory=set)
    unloading: set[str] = field(default_factory=set)
    most_held: int = 0  # most slots ever held at once: never above cap
    # Queries waiting for a change (all on one event loop: no lock, each step is atomic).
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def held(self) -> int:
        return len(self.ours) + len(self.loading)

    def step(self, name: str) -> tuple[Step, str | None]:
        """What a query for `name` does now; reserves the slot (LOAD) or the victim (UNLOAD)."""
        if name in self.failed:
            return Step.FAILED, self.failed[name]
        if name in self.loading or name in self.unloading:
            return Step.WAIT, None
        if name in self.ready:
            if name in self.ours:
                self.ours.move_to_end(name)
            return Step.READY, None
        if self.cap is None or self.held < self.cap:
            self.loading.add(name)
            self.most_held = max(self.most_held, self.held)
            return Step.LOAD, None
        victim = next((n for n in self.ours if self.idle(n)), None)
        if victim is None:
            return Step.WAIT, None
        self.begin_unload(victim)
        return Step.UNLOAD, victim

    async def wait(self) -> None:
        """Until the next `wake` (a slot freed, a (un)registration ended)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        await waiter

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def idle(self, name: str) -> bool:
        return not self.demand[name] and name not in self.unloading

    def begin_unload(self, name: str) -> None:
        self.unloading.add(name)
        self.ready.discard(name)  # a query for it now waits, then registers it again

    def loaded(self, name: str, ours: bool, problem: str | None) -> None:
        """A registration ended: by us (`ours`), found already there, or failed (`problem`)."""
        self.loading.discard(name)
        if problem is not None:
            self.failed[name] = problem
            return
        self.ready.add(name)
        if ours:
            self.ours[name] = None

    def unloaded(self, name: str, gone: bool) -> None:
        """An unregistration ended; `gone`: the name is no longer registered there."""
        self.unloading.discard(name)
        if gone:
            self.ours.pop(name, None)
            self.retiring.discard(name)
        else:
            self.ready.add(name)  # still registered (and still ours): usable

    def to_retire(self, name: str) -> bool:
        """Whether `name` should be unregistered now: ours, unclaimed, unused (see above)."""
        return (
            name in self.retiring
            and name in self.ours
            and not self.claims[name]
            and self.idle(name)
            and name not in self.loading
        )
