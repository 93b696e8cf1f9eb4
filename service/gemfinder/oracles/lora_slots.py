"""Which adapter registrations gemfinder holds on one vLLM endpoint, within its host-memory cap.

Bookkeeping only, no I/O: gemfinder.oracles.lora_runtime asks `step` what a query (a `Ticket`,
numbered in arrival order) must do next and reports what its requests did. A registration slot
is held by each name gemfinder registered there (`ours`, least recently used first) and by each
registration in flight; there are at most `cap` of them (the endpoint's `max_cpu_loras`; None:
no cap). Names the server had already (`--lora-modules`, someone else's) are used and take no
slot: gemfinder never unregisters them.

The names waiting for a slot (`wanting`) are served in arrival order: only the oldest may take a
free slot or unregister one of ours that no query uses (least recently used first, preferring
one no query waits for either); the others wait behind it, so a freed slot always goes to the
oldest waiter. Queries for a registered name keep going meanwhile (a round's queries for it let
go of it together: none is evicted while the round still needs it), but only `patience` of those
that arrived after the oldest waiter: then the newer ones wait until it is served, so the
registrations drain and a steady stream of queries on every held name cannot starve it. No
registration is ever unregistered early for lack of a waiter. Replicas sharing a store also
count the slots the others hold (`outside`, from gemfinder.lora_leases).

`claims` counts the searches that still have a name among their candidates: a search that ends
or eliminates a candidate drops its claim, and the name is unregistered once no search claims
it and no query uses it (`retiring` holds those still in use).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from enum import Enum

PATIENCE = 64  # queries let past the oldest waiter before the newer ones wait behind it


class Step(Enum):
    READY = "ready"  # registered: ask it
    FAILED = "failed"  # its registration failed: the query fails
    LOAD = "load"  # register it (a slot is reserved)
    UNLOAD = "unload"  # unregister the victim first, then ask again
    WAIT = "wait"  # no slot for it yet, or the name is being (un)registered: wait for a change


@dataclass(eq=False)
class Ticket:
    """One query for `name`; `seq` orders the queries by arrival."""

    name: str
    seq: int
    admitted: bool = False  # got READY: uses the registration until it leaves
    queued: bool = False  # counted in `Slots.short` (waits, or waited, for a slot)
    held_back: bool = False  # counted in `Slots.held_back` (waits behind the oldest waiter)


@dataclass
class Slots:
    """One endpoint's registrations (see the module docstring)."""

    cap: int | None
    patience: int = PATIENCE
    ours: OrderedDict[str, None] = field(default_factory=OrderedDict)
    ready: set[str] = field(default_factory=set)  # registered there, by anyone
    failed: dict[str, str] = field(default_factory=dict)  # name -> why its load failed
    demand: Counter[str] = field(default_factory=Counter)  # queries waiting for or using it
    using: Counter[str] = field(default_factory=Counter)  # queries admitted (READY), in flight
    held_back: Counter[str] = field(default_factory=Counter)  # waiting behind the oldest waiter
    claims: Counter[str] = field(default_factory=Counter)
    retiring: set[str] = field(default_factory=set)
    loading: set[str] = field(default_factory=set)
    unloading: set[str] = field(default_factory=set)
    # The names waiting for a slot -> the arrival of their oldest query, and their tickets.
    wanting: dict[str, int] = field(default_factory=dict)
    short: Counter[str] = field(default_factory=Counter)
    passed: int = 0  # queries admitted past the oldest waiter (`passed_for`)
    passed_for: int | None = None
    most_held: int = 0  # most slots ever held at once: never above cap
    # Slots other replicas hold on the endpoint (gemfinder.lora_leases), as last told: out of
    # this process's reach until the store says otherwise.
    outside: int = 0
    arrivals: int = 0
    # Queries waiting for a change (all on one event loop: no lock, each step is atomic).
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def held(self) -> int:
        return len(self.ours) + len(self.loading)

    def enter(self, name: str) -> Ticket:
        """A query for `name` arrives (before its first `step`)."""
        self.arrivals += 1
        self.demand[name] += 1
        return Ticket(name, self.arrivals)

    def leave(self, ticket: Ticket) -> bool:
        """The query is done (answered, failed or cancelled); True: the waiters should look
        again (no query uses its name any more, or the queue changed)."""
        name = ticket.name
        changed = self._dequeue(ticket)  # a waiter gone: the next one may be the oldest now
        self._let_go(ticket)
        self.demand[name] -= 1
        if not self.demand[name]:
            del self.demand[name]
            changed = True
        if ticket.admitted:
            ticket.admitted = False
            self.using[name] -= 1
            if not self.using[name]:
                del self.using[name]
                changed = True
        return changed

    def step(self, ticket: Ticket) -> tuple[Step, str | None]:
        """What the query does now; reserves the slot (LOAD) or the victim (UNLOAD)."""
        name = ticket.name
        if name in self.failed:
            self._let_go(ticket)
            self._dequeue(ticket)
            return Step.FAILED, self.failed[name]
        if name in self.loading or name in self.unloading:
            return Step.WAIT, None
        if name in self.ready:
            if name in self.ours and not self._may_pass(ticket):
                if not ticket.held_back:
                    ticket.held_back = True
                    self.held_back[name] += 1
                return Step.WAIT, None
            self._let_go(ticket)
            self._dequeue(ticket)
            ticket.admitted = True
            self.using[name] += 1
            if name in self.ours:
                self.ours.move_to_end(name)
            return Step.READY, None
        self._let_go(ticket)  # not registered (any more): it waits for a slot now
        self._enqueue(ticket)
        mine = self.wanting[name]
        ahead = sum(seq < mine for seq in self.wanting.values())
        if self.cap is None or self.cap - self.held - self.outside > ahead:
            self.wanting.pop(name)  # its queries now wait for the registration
            self.loading.add(name)
            self.most_held = max(self.most_held, self.held)
            return Step.LOAD, None
        if ahead:
            return Step.WAIT, None  # an older waiter takes the next slot
        # Unused, and no query waits for it but those held back for this waiter (never one
        # whose queries are about to use it, such as a name just registered for them).
        usable = [
            n
            for n in self.ours
            if not self.using[n] and n not in self.unloading and self.demand[n] == self.held_back[n]
        ]
        victim = next((n for n in usable if not self.demand[n]), usable[0] if usable else None)
        if victim is None:
            return Step.WAIT, None
        self.begin_unload(victim)
        return Step.UNLOAD, victim

    def _may_pass(self, ticket: Ticket) -> bool:
        """Whether a query for one of our registered names may go before the oldest waiter."""
        if not self.wanting:
            return True
        oldest = min(self.wanting.values())
        if ticket.seq < oldest:
            return True  # it arrived first
        if self.passed_for != oldest:
            self.passed_for, self.passed = oldest, 0
        if self.passed >= self.patience:
            return False
        self.passed += 1
        return True

    def _let_go(self, ticket: Ticket) -> None:
        if ticket.held_back:
            ticket.held_back = False
            self.held_back[ticket.name] -= 1
            if not self.held_back[ticket.name]:
                del self.held_back[ticket.name]

    def _enqueue(self, ticket: Ticket) -> None:
        if not ticket.queued:
            ticket.queued = True
            self.short[ticket.name] += 1
        seq = self.wanting.get(ticket.name, ticket.seq)
        self.wanting[ticket.name] = min(seq, ticket.seq)

    def _dequeue(self, ticket: Ticket) -> bool:
        """Not waiting for a slot any more; True: its name has left the queue."""
        if not ticket.queued:
            return False
        ticket.queued = False
        self.short[ticket.name] -= 1
        if self.short[ticket.name]:
            return False
        del self.short[ticket.name]
        return self.wanting.pop(ticket.name, None) is not None

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
