"""Cross-cutting work of every RPC, as grpc.aio server interceptors: metrics, auth, errors.

Each interceptor wraps the behaviour of every handler (single or streamed requests and
responses). Order matters:
`[MetricsInterceptor(), AuthInterceptor(token), ErrorInterceptor()]`, the first outermost, so
metrics see the final status of every call, including rejected ones.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gemfinder import metrics
from gemfinder.errors import UserError
from gemfinder.server.errors import DETAILS_KEY, kind_of, rich_status

log = logging.getLogger(__name__)
# Kubernetes gRPC probes send no token: the health service stays open.
OPEN_SERVICES = ("/grpc.health.v1.Health/",)


class _Wrapping(grpc.aio.ServerInterceptor):
    def deserializer(self, inner: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        return inner

    async def unary(self, method: str, behavior, request, context) -> Any:
        return await behavior(request, context)

    async def stream(self, method: str, behavior, request, context) -> AsyncIterator[Any]:
        async for response in behavior(request, context):
            yield response

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return self.wrap(details.method, await continuation(details))

    def wrap(self, method: str, handler: grpc.RpcMethodHandler | None):
        """The handler with `unary` (single response) or `stream` (response stream) around its
        behaviour, for every kind of handler."""
        if handler is None:
            return handler
        single = handler.unary_unary or handler.stream_unary
        inner = single or handler.unary_stream or handler.stream_stream
        if single is None and inspect.iscoroutinefunction(inner):
            inner = _as_generator(inner)
        request_stream = (handler.stream_unary or handler.stream_stream) is not None

        # grpc.aio awaits only real coroutine functions: no lambdas here.
        async def call(req, ctx):
            return await self.unary(method, inner, req, ctx)

        async def stream(req, ctx):
            async for response in self.stream(method, inner, req, ctx):
                yield response

        make = {
            (False, True): grpc.unary_unary_rpc_method_handler,
            (True, True): grpc.stream_unary_rpc_method_handler,
            (False, False): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_stream_rpc_method_handler,
        }[request_stream, single is not None]
        # Request streams (reflection; refused calls) keep their deserializer: the hook is for
        # single requests, which arrive whole before the handler runs.
        deserializer = handler.request_deserializer
        return make(
            call if single is not None else stream,
            request_deserializer=deserializer
            if request_stream
            else self.deserializer(deserializer),
            response_serializer=handler.response_serializer,
        )


class _Writes:
    """A call's context whose `write` hands each message to the wrapping generator instead."""

    def __init__(self, context, queue: asyncio.Queue) -> None:
        self._context = context
        self._queue = queue

    async def write(self, message) -> None:
        await self._queue.put(message)

    def __getattr__(self, name: str):
        return getattr(self._context, name)


def _as_generator(behavior):
    """A streaming handler written as a coroutine that sends with `await context.write(m)`
    (grpc_health's aio Health.Watch) as an async generator, the form the interceptors iterate:
    iterating the coroutine itself failed every Health.Watch with INTERNAL."""

    async def generator(request, context):
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)  # write waits for the send: no backlog
        task = asyncio.ensure_future(behavior(request, _Writes(context, queue)))
        getter = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((getter, task), return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()  # the handler returned (or raised): nothing more will come
                while not queue.empty():  # what it wrote last, before the getter ran
                    yield queue.get_nowait()
                task.result()  # what it raised (an abort included) ends the call
                return
        finally:  # the call ended first (cancelled, or the server stopping)
            task.cancel()
            if getter is not None:
                getter.cancel()

    return generator


async def abort_for(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, message, details = rich_status(exc)
    if kind_of(exc) == "internal":
        log.error("internal error", exc_info=exc)
    await context.abort(code, message, trailing_metadata=((DETAILS_KEY, details),))


class _Malformed:
    """Stands for a request whose bytes are not its message, so the handler can refuse it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _refuse_malformed(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise UserError("request", f"not a valid protobuf message ({request.error})")


class ErrorInterceptor(_Wrapping):
    """Map every exception to its status through the one table in server/errors.py.

    Undecodable request bytes are INVALID_ARGUMENT too: left to grpc they would be INTERNAL.
    """

    def deserializer(self, inner):
        if inner is None:
            return None

        def decode(raw: bytes) -> Any:
            try:
                return inner(raw)
            except DecodeError as err:
                return _Malformed(err)

        return decode

    async def unary(self, method, behavior, request, context):
        try:
            _refuse_malformed(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error gets a status
            await abort_for(context, exc)

    async def stream(self, method, behavior, request, context):
        try:
            _refuse_malformed(request)
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_for(context, exc)


class Unauthenticated(Exception):
    kind = "unauthenticated"


class AuthInterceptor(_Wrapping):
    """Require `authorization: Bearer <token>` when a token is configured, on every service but
    health (reflection included: it describes the API to whoever asks).

    The check runs on the call's metadata, before the request is read: a refused call gets a
    handler that takes the request as a stream and never reads it, so its body is neither
    parsed nor held (8 unauthenticated 57 MB requests used to leave the server 440 MB larger;
    figures in docs/service.md).
    """

    def __init__(self, token: str | None) -> None:
        self.token = token

    def allowed(self, method: str, metadata) -> bool:
        if not self.token or method.startswith(OPEN_SERVICES):
            return True
        got = dict(metadata or ()).get("authorization", "")
        if isinstance(got, bytes):
            got = got.decode(errors="replace")
        return hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode())

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or self.allowed(details.method, details.invocation_metadata):
            return handler  # an unknown method stays UNIMPLEMENTED: metrics label real ones
        if handler.unary_unary is not None or handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_refuse)
        return grpc.stream_stream_rpc_method_handler(_refuse_stream)


async def _refuse(requests, context) -> None:
    await abort_for(context, Unauthenticated("missing or wrong bearer token"))


async def _refuse_stream(requests, context) -> AsyncIterator[Any]:
    await _refuse(requests, context)
    yield  # never reached: a generator, as streaming handlers must be


class MetricsInterceptor(_Wrapping):
    """Count calls by method and status code, and time them. A call its client abandoned
    (cancelled, or past its deadline) ends with CancelledError and is counted as CANCELLED."""

    @staticmethod
    def _done(method: str, context, start: float, outcome: str | None) -> None:
        code = context.code()
        if outcome is not None:
            name = outcome
        elif code is None or isinstance(code, int):
            name = "OK" if code in (None, 0) else str(code)
        else:
            name = code.name
        short = method.rsplit("/", 1)[-1]
        metrics.RPC_REQUESTS.labels(short, name).inc()
        metrics.RPC_DURATION.labels(short).observe(time.perf_counter() - start)

    async def unary(self, method, behavior, request, context):
        start, outcome = time.perf_counter(), "UNKNOWN"
        try:
            response = await behavior(request, context)
            outcome = None
            return response
        except grpc.aio.AbortError:
            outcome = None
            raise
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        finally:
            self._done(method, context, start, outcome)

    async def stream(self, method, behavior, request, context):
        start, outcome = time.perf_counter(), "UNKNOWN"
        try:
            async for response in behavior(request, context):
                yield response
            outcome = None
        except grpc.aio.AbortError:
            outcome = None
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "CANCELLED"
            raise
        finally:
            self._done(method, context, start, outcome)
