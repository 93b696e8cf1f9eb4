"""What a Python caller of a replicated gemfinder service needs (docs/service.md, Replicas):
the service config with gRPC's standard retry policy, a channel over every replica, and a
WatchSearch that resumes where its stream broke.

- SERVICE_CONFIG: round-robin over the addresses a channel resolves (a headless Kubernetes
  service, or an `ipv4:` list), and a retryPolicy retrying UNAVAILABLE (a replica stopping,
  restarting or unreachable; the database unreachable) and CANCELLED (sent by a stopping
  replica for calls it had received but not begun; a call the client cancels itself is never
  retried) on the unary methods, which are safe to repeat: Get, List and Cancel by nature,
  StartSearch and SelectBestModel by their request_id (send one: without it a retried start
  may start a second search).
- `channel(target)`: a grpc.aio channel with that config.
- `watch_search(stub, search_id)`: WatchSearch's events, resumed after a broken stream on any
  replica with `after_sequence` set to the last event received, so the caller sees every event
  once, in order, up to FINISHED.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

SERVICE = "gemfinder.v1.ModelSearchService"
RETRIED = (
    "StartSearch",
    "SelectBestModel",
    "GetSearch",
    "CancelSearch",
    "ListSearches",
    "PlanSearch",
)
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in RETRIED],
            "retryPolicy": {
                "maxAttempts": 5,  # gRPC's ceiling
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
            },
        }
    ],
}
# A broken stream is resumed on these codes: the replica went away (UNAVAILABLE; a kill -9
# reads as a reset connection), or the server cancelled it while stopping.
RESUMED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def channel(target: str, **options: Any) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to `target` (e.g. "ipv4:10.0.0.1:50051,10.0.0.2:50051" or
    "dns:///gemfinder-headless:50051") with SERVICE_CONFIG; extra channel `options` appended."""
    settings = [("grpc.service_config", json.dumps(SERVICE_CONFIG)), ("grpc.enable_retries", 1)]
    return grpc.aio.insecure_channel(target, options=settings + list(options.items()))


async def watch_search(
    stub: pb_grpc.ModelSearchServiceStub,
    search_id: str,
    *,
    after: int | None = None,
    give_up_s: float = 60.0,
    pause_s: float = 0.2,
    on_break: Callable[[grpc.aio.AioRpcError], None] | None = None,
    **call: Any,
) -> AsyncIterator[pb.WatchSearchResponse]:
    """WatchSearch's events up to FINISHED, resumed after a broken stream (on whichever replica
    the channel picks) from the last event received; `after`: resume from there at once.
    `on_break` is called with each error a stream broke on (e.g. to log it). Raises the last
    error once no stream has given an event for `give_up_s`."""
    quiet_since = time.monotonic()
    while True:
        request = pb.WatchSearchRequest(search_id=search_id)
        if after is not None:
            request.after_sequence = after
        try:
            async for event in stub.WatchSearch(request, **call):
                yield event
                after = event.sequence
                quiet_since = time.monotonic()
                if event.type == pb.EVENT_TYPE_FINISHED:
                    return
        except grpc.aio.AioRpcError as err:
            if err.code() not in RESUMED or time.monotonic() - quiet_since > give_up_s:
                raise
            if on_break is not None:
                on_break(err)
        await asyncio.sleep(pause_s)
