"""A running simulated fleet: one aiohttp server per endpoint, each on its own loopback port.

An endpoint marked down keeps its port bound but not listening, so clients get "connection
refused" exactly as from a TGI whose model is still loading; `set_down` flips it at run time.

Every served model is a matrix row and every item of the query set a matrix column: a fleet
given items outside its matrix refuses to start, naming them, since it could only make their
answers up; so does a fleet given items of a task whose answer form it cannot write
(fleet.responder.FORMS).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from aiohttp import web

from gemfinder.cost import ModelPool
from gemfinder.sim.fleet.config import EndpointSpec, FleetConfig
from gemfinder.sim.fleet.index import PromptIndex
from gemfinder.sim.fleet.responder import check_answerable
from gemfinder.sim.fleet.server import make_app
from gemfinder.sim.fleet.simulator import SimulatedModel
from gemfinder.sim.fleet.state import EndpointState
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import Item


class PortUnavailable(OSError):
    """An endpoint's port cannot be bound (in use, privileged, out of range)."""

    def __init__(self, endpoint: str, host: str, port: int, reason: str) -> None:
        super().__init__(f"endpoint {endpoint}: cannot listen on {host}:{port}: {reason}")
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.reason = reason


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class ItemsOutsideMatrix(ValueError):
    """The query set has items that are not columns of the matrix (the fleet could only make
    their answers up); the message names the first few."""

    def __init__(self, outside: list[str], total: int, shown: int = 5) -> None:
        more = f", ... ({len(outside) - shown} more)" if len(outside) > shown else ""
        super().__init__(
            f"{len(outside)} of {total} items are not columns of the matrix "
            f"({', '.join(outside[:shown])}{more}); the fleet answers only from the matrix "
            "(`gemfinder fleet items --matrix FILE` writes a query set of its items)"
        )


class _Endpoint:
    def __init__(self, spec: EndpointSpec, state: EndpointState, host: str) -> None:
        self.spec = spec
        self.state = state
        self.host = host
        self.port = spec.port
        self.runner: web.AppRunner | None = None
        self.site: web.SockSite | None = None
        self.reserved: socket.socket | None = None

    async def up(self) -> None:
        sock = self.reserved or _bound_socket(self.host, self.port)
        self.reserved = None
        self.port = sock.getsockname()[1]
        if self.runner is None:
            # handler_cancellation: a client that gives up (timeout) frees its slot at once.
            self.runner = web.AppRunner(
                make_app(self.state),
                handler_cancellation=True,
                access_log=None,
                shutdown_timeout=0.5,
            )
            await self.runner.setup()
        self.site = web.SockSite(self.runner, sock)
        await self.site.start()

    async def down(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self.reserved is None:
            # Bound but never listening: connecting to it is refused.
            self.reserved = _bound_socket(self.host, self.port)
            self.port = self.reserved.getsockname()[1]

    async def close(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.reserved is not None:
            self.reserved.close()
            self.reserved = None


class Fleet:
    """Use as `async with Fleet(config, matrix, items) as fleet:`; URLs via `fleet.url(name)`."""

    def __init__(self, config: FleetConfig, matrix: CorrectnessMatrix, items: Iterable[Item]):
        self.config = config
        items = list(items)
        columns = set(matrix.items)
        outside = [item.id for item in items if item.id not in columns]
        if outside:
            raise ItemsOutsideMatrix(outside, len(items))
        check_answerable(items)  # UnanswerableTasks: a task whose replies it cannot write
        index = PromptIndex(items)
        self._endpoints: dict[str, _Endpoint] = {}
        # The GPU pools of the fleet by name: their endpoints' ledgers share one ModelPool.
        self.pools: dict[str, ModelPool] = {}
        for n, spec in enumerate(config.endpoints):
            model = SimulatedModel(
                spec, matrix, index, seed=config.seed, flip_prob=config.sampling_flip_prob
            )
            shared = spec.serving.gpu_pool if spec.serving else None
            pool = None if shared is None else self.pools.setdefault(shared.name, ModelPool(shared))
            state = EndpointState(model, seed=config.seed * 1000 + n, pool=pool)
            self._endpoints[spec.name] = _Endpoint(spec, state, config.host)

    async def start(self) -> Fleet:
        """Bind and start every endpoint; if one port cannot be bound, close the others and
        raise PortUnavailable naming that endpoint."""
        for endpoint in self._endpoints.values():
            try:
                if endpoint.spec.down:
                    await endpoint.down()
                else:
                    await endpoint.up()
            except (OSError, OverflowError) as err:
                await self.stop()
                reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                raise PortUnavailable(
                    endpoint.spec.name, endpoint.host, endpoint.port, reason
                ) from err
        return self

    async def stop(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.close()

    async def __aenter__(self) -> Fleet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def names(self) -> list[str]:
        return list(self._endpoints)

    def url(self, name: str) -> str:
        endpoint = self._endpoints[name]
        return f"http://{endpoint.host}:{endpoint.port}"

    def state(self, name: str) -> EndpointState:
        return self._endpoints[name].state

    async def set_down(self, name: str, down: bool) -> None:
        endpoint = self._endpoints[name]
        if down:
            await endpoint.down()
        elif endpoint.site is None:
            await endpoint.up()
