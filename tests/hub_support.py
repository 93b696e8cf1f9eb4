"""Helpers for the discovery tests: the Hub stand-in on a real socket in a background thread
(huggingface_hub's client is synchronous), and the tree a generator seed should yield."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from contextlib import contextmanager

from aiohttp import web
from gemfinder.sim.fleet.hub import Hub, HubModel


@contextmanager
def running(server):
    """Run `server` (anything with async start/stop, e.g. a `Hub`) on its own event loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as err:  # surfaced in the test thread below
            failure.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5), "server did not start"
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextmanager
def running_hub(models: list[HubModel], page_size: int = 1000):
    with running(Hub(models, page_size=page_size)) as hub:
        yield hub


class PlainServer:
    """An HTTP server that answers every GET with an HTML page (not a Hub)."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text="<html>hello</html>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def expected_tree(tree, root: int, relations, max_depth: int) -> dict[str, tuple]:
    """{id: (parent id, relation, depth)} breadth-first from row `root` of a SyntheticTree."""
    ids, parent, relation = tree.matrix.models, tree.tree.parent, tree.relations
    children = defaultdict(list)
    for k, p in enumerate(parent.tolist()):
        if p >= 0:
            children[p].append(k)
    out = {ids[root]: (None, None, 0)}
    frontier = [root]
    for depth in range(1, max_depth + 1):
        frontier = [c for p in frontier for c in children[p] if relation[c] in relations]
        out.update({ids[c]: (ids[parent[c]], relation[c], depth) for c in frontier})
    return out


def found_tree(discovery) -> dict[str, tuple]:
    return {m.model_id: (m.parent, m.relation, m.depth) for m in discovery.models}
