"""Adapter registrations shared by the replicas of one store (schema version 10, `lora_leases`).

gemfinder.oracles.lora_runtime keeps each process's registrations within an endpoint's
`max_cpu_loras`; replicas (processes sharing one database) share that cap and who uses what
through one row per (endpoint, adapter, replica using it):
- `state`: 'loading' (the replica registers it now), 'ready' (registered), 'unloading' (the
  replica unregisters it now: nobody else may use it or count it as free meanwhile);
- `lease_until`: renewed by the replica's heartbeat (`renew`, every third of the lease); a row
  past it is a dead or stalled replica's.

An adapter with rows counts once in the endpoint's cap, live or not: a dead replica's
registration stays on the server until someone unregisters it. Each decision reads the
endpoint's rows and writes in one transaction holding the endpoint's lock (PostgreSQL: a
transaction-scoped advisory lock; SQLite: its write lock), so two replicas never both take the
last slot nor both decide to unregister:
- `acquire`: an adapter a live replica holds (loading or ready) is joined (READY when it is
  registered, else LOAD: registering again is harmless, vLLM answers "already loaded"); one
  being unregistered is waited for (WAIT); one whose rows are all expired (an orphan) is taken
  over (LOAD); a new one takes a free slot (LOAD), else evicts an orphan (EVICT: the caller
  unregisters it first), else FULL with the number of slots the others hold.
- `release`: the caller unregisters only when it still holds a row (its lease was not taken
  over while it stalled) and no other live replica uses the adapter (LAST); else its row goes
  and the adapter stays (SHARED, or GONE: its lease was taken over, somebody else's now).
The rows of an ended replica go with its last use (release); a killed one's expire, and each
live replica's heartbeat unregisters such orphans of the endpoints it uses (`adopt_orphan`), so
a dead replica's registrations do not outlive it by much more than a lease. Not covered: vLLM
checks no lease, so an unload a replica sends after stalling longer than its lease between
`release` (LAST) and the request leaving removes what another replica registered meanwhile;
that one's next query finds it gone and registers it again (lora_runtime's `lost`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

Run = Callable[[str, tuple], list[tuple]]  # gemfinder.store.Run: a statement -> its rows

LEASE_S = 15.0  # as the searches' leases (search.manager.LEASE_S)


class Grant(Enum):
    READY = "ready"  # registered by another replica: use it (no request)
    LOAD = "load"  # register it (a slot is ours)
    EVICT = "evict"  # unregister `victim` (a dead replica's), then ask again
    WAIT = "wait"  # being unregistered (by a replica, or our heartbeat): ask again soon
    FULL = "full"  # every slot held: ask again when one may be free


class Release(Enum):
    LAST = "last"  # unregister it (the row says 'unloading' meanwhile), then `unloaded`
    SHARED = "shared"  # another live replica uses it: our row is gone, the adapter stays
    GONE = "gone"  # our lease was taken over (we stalled): not ours to unregister


@dataclass(frozen=True)
class Decision:
    grant: Grant
    shared: bool = False  # LOAD of an adapter other replicas registered (or may have)
    victim: str | None = None  # EVICT
    outside: int = 0  # adapters held on the endpoint by other live replicas only


ROWS = "SELECT adapter, replica, state, lease_until >= {now} FROM lora_leases WHERE endpoint = ?"
PUT = (
    "INSERT INTO lora_leases (endpoint, adapter, replica, state, lease_until)"
    " VALUES (?, ?, ?, ?, {now} + ?) ON CONFLICT (endpoint, adapter, replica)"
    " DO UPDATE SET state = excluded.state, lease_until = excluded.lease_until"
)
DROP_ADAPTER = "DELETE FROM lora_leases WHERE endpoint = ? AND adapter = ?"
DROP_MINE = "DELETE FROM lora_leases WHERE endpoint = ? AND adapter = ? AND replica = ?"
RENEW = (
    "UPDATE lora_leases SET lease_until = {now} + ? WHERE replica = ? RETURNING endpoint, adapter"
)
EXPIRE_MINE = (
    "UPDATE lora_leases SET lease_until = {now} - 1 WHERE endpoint = ? AND adapter = ?"
    " AND replica = ?"
)


@dataclass(frozen=True)
class Row:
    adapter: str
    replica: str
    state: str
    live: bool


def decide(rows: list[Row], me: str, name: str, cap: int | None) -> Decision:
    """What `me` may do to use `name`, from the endpoint's rows (pure: the tests' oracle)."""
    theirs = [r for r in rows if r.adapter == name and r.replica != me and r.live]
    adapters = {r.adapter for r in rows}
    mine = {r.adapter for r in rows if r.replica == me}
    # What other live replicas hold: a dead one's registrations count in the cap here, but a
    # query short of a slot evicts them (EVICT) rather than its own replica's idle ones.
    outside = len({r.adapter for r in rows if r.live} - mine - {name})
    # Being unregistered, by another replica or by this one (a dead replica's registration
    # its heartbeat evicts): registering it before that request ends would be undone by it.
    if any(r.adapter == name and r.live and r.state == "unloading" for r in rows):
        return Decision(Grant.WAIT, outside=outside)
    if theirs:
        ready = any(r.state == "ready" for r in theirs)
        return Decision(Grant.READY if ready else Grant.LOAD, shared=True, outside=outside)
    if name in adapters:  # every row of it expired (or only ours): take it over
        return Decision(Grant.LOAD, shared=True, outside=outside)
    if cap is None or len(adapters) < cap:
        return Decision(Grant.LOAD, outside=outside)
    live = {r.adapter for r in rows if r.live}
    orphans = sorted(adapters - live)
    if orphans:
        return Decision(Grant.EVICT, victim=orphans[0], outside=outside)
    return Decision(Grant.FULL, outside=outside)


class LoraLeases:
    """The shared registrations of one replica (`replica`) in `store` (gemfinder.store's
    SqlStore): every call one transaction, off the event loop (PostgreSQL; SQLite's take
    microseconds on it)."""

    def __init__(self, store: Any, replica: str, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.replica = replica
        self.lease_s = lease_s

    async def _locked(self, endpoint: str | None, work: Callable[[Run], Any]) -> Any:
        return await self.store.off_loop_locked(endpoint, work)

    async def acquire(
        self, endpoint: str, name: str, cap: int | None, gone: bool = False
    ) -> Decision:
        """`gone`: a query of ours found `name` unregistered (by someone outside gemfinder):
        registered by a replica or not, it is registered again (LOAD, not READY)."""

        def work(run: Run) -> Decision:
            rows = [Row(a, r, s, bool(live)) for a, r, s, live in run(ROWS, (endpoint,))]
            decision = decide(rows, self.replica, name, cap)
            if gone and decision.grant is Grant.READY:
                decision = replace(decision, grant=Grant.LOAD)
            grant = decision.grant
            if grant in (Grant.READY, Grant.LOAD):
                if (
                    grant is Grant.LOAD
                    and decision.shared
                    and not any(
                        r.live for r in rows if r.adapter == name and r.replica != self.replica
                    )
                ):
                    run(DROP_ADAPTER, (endpoint, name))  # an orphan's rows: ours now
                state = "ready" if grant is Grant.READY else "loading"
                run(PUT, (endpoint, name, self.replica, state, self.lease_s))
            elif grant is Grant.EVICT:
                run(DROP_ADAPTER, (endpoint, decision.victim))
                run(PUT, (endpoint, decision.victim, self.replica, "unloading", self.lease_s))
            return decision

        return await self._locked(endpoint, work)

    async def loaded(
        self, endpoint: str, name: str, registered: bool | None, shared: bool = False
    ) -> bool:
        """Our registration ended: registered (True), failed (False), or found registered
        already (None: vLLM's "already loaded"); whether it is a registration of the replicas
        (ours to share: the row says 'ready') rather than someone else's (it takes no slot; the
        row goes). Found registered already, it is the replicas' when our grant said so
        (`shared`: joined, or a dead replica's taken over) or another replica holds it now
        (one that registered it at the same time as us, whichever request came first)."""

        def work(run: Run) -> bool:
            ours = registered
            if ours is None and shared:
                ours = True
            elif ours is None:
                rows = [Row(a, r, s, bool(live)) for a, r, s, live in run(ROWS, (endpoint,))]
                ours = any(r.adapter == name and r.replica != self.replica for r in rows)
            if ours:
                run(PUT, (endpoint, name, self.replica, "ready", self.lease_s))
            else:
                run(DROP_MINE, (endpoint, name, self.replica))
            return ours

        return await self._locked(endpoint, work)

    async def release(self, endpoint: str, name: str) -> Release:
        """We are done with `name`: whether we unregister it (see the module docstring)."""

        def work(run: Run) -> Release:
            rows = [Row(a, r, s, bool(live)) for a, r, s, live in run(ROWS, (endpoint,))]
            ours = [r for r in rows if r.adapter == name and r.replica == self.replica]
            if not ours:
                return Release.GONE
            if any(r.adapter == name and r.replica != self.replica and r.live for r in rows):
                run(DROP_MINE, (endpoint, name, self.replica))
                return Release.SHARED
            run(DROP_ADAPTER, (endpoint, name))  # dead replicas' rows of it: unregistered now
            run(PUT, (endpoint, name, self.replica, "unloading", self.lease_s))
            return Release.LAST

        return await self._locked(endpoint, work)

    async def unloaded(self, endpoint: str, name: str, gone: bool) -> None:
        """Our unregistration ended: gone from the server (the row goes), or not (the row
        expires now: an orphan, which the next replica short of a slot unregisters)."""
        statement = DROP_MINE if gone else EXPIRE_MINE
        await self._locked(endpoint, lambda run: run(statement, (endpoint, name, self.replica)))

    async def kept(self, endpoint: str, name: str) -> None:
        """An unregistration we decided against (LAST, then the request failed, or we still
        use it): the row is ready again."""
        await self._locked(
            endpoint, lambda run: run(PUT, (endpoint, name, self.replica, "ready", self.lease_s))
        )

    async def adopt_orphan(self, endpoint: str) -> str | None:
        """A registration of the endpoint no live replica uses (a dead one's), now ours to
        unregister (its row 'unloading'; then `unloaded`); None: there is none."""

        def work(run: Run) -> str | None:
            rows = [Row(a, r, s, bool(live)) for a, r, s, live in run(ROWS, (endpoint,))]
            orphans = sorted({r.adapter for r in rows} - {r.adapter for r in rows if r.live})
            if not orphans:
                return None
            run(DROP_ADAPTER, (endpoint, orphans[0]))
            run(PUT, (endpoint, orphans[0], self.replica, "unloading", self.lease_s))
            return orphans[0]

        return await self._locked(endpoint, work)

    async def renew(self) -> set[tuple[str, str]]:
        """Extend every lease of ours (one statement); the (endpoint, adapter) we still hold."""
        rows = await self._locked(None, lambda run: run(RENEW, (self.lease_s, self.replica)))
        return {(endpoint, adapter) for endpoint, adapter in rows}
