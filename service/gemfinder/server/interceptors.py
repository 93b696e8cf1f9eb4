"""Cross-cutting work of every RPC, as grpc.aio server interceptors: metrics, auth, errors.

Each interceptor wraps the behaviour of unary and server-streaming handlers. Order matters:
`[MetricsInterceptor(), AuthInterceptor(token), ErrorInterceptor()]`, the first outermost, so
metrics see the final status of every call, including rejected ones.
"""

from __future__ import annotations

import hmac
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
        handler = await continuation(details)
        method = details.method
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            # grpc.aio awaits only real coroutine functions: no lambdas here.
            async def unary(req, ctx):
                return await self.unary(method, inner, req, ctx)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=self.deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(req, ctx):
                async for response in self.stream(method, inner_stream, req, ctx):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=self.deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # client/bidi streams (reflection) pass through unchanged


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
    """Require `authorization: Bearer <token>` when a token is configured."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def _check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        if not self.token or method.startswith(OPEN_SERVICES):
            return
        got = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode()):
            raise Unauthenticated("missing or wrong bearer token")

    async def unary(self, method, behavior, request, context):
        try:
            self._check(method, context)
        except Unauthenticated as exc:
            await abort_for(context, exc)
        return await behavior(request, context)

    async def stream(self, method, behavior, request, context):
        try:
            self._check(method, context)
        except Unauthenticated as exc:
            await abort_for(context, exc)
        async for response in behavior(request, context):
            yield response


class MetricsInterceptor(_Wrapping):
    """Count calls by method and status code, and time them."""

    @staticmethod
    def _done(method: str, context, start: float, failed: bool) -> None:
        code = context.code()
        if code is None or isinstance(code, int):
            name = "UNKNOWN" if failed else "OK" if code in (None, 0) else str(code)
        else:
            name = code.name
        short = method.rsplit("/", 1)[-1]
        metrics.RPC_REQUESTS.labels(short, name).inc()
        metrics.RPC_DURATION.labels(short).observe(time.perf_counter() - start)

    async def unary(self, method, behavior, request, context):
        start, failed = time.perf_counter(), True
        try:
            response = await behavior(request, context)
            failed = False
            return response
        except grpc.aio.AbortError:
            failed = False
            raise
        finally:
            self._done(method, context, start, failed)

    async def stream(self, method, behavior, request, context):
        start, failed = time.perf_counter(), True
        try:
            async for response in behavior(request, context):
                yield response
            failed = False
        except grpc.aio.AbortError:
            failed = False
            raise
        finally:
            self._done(method, context, start, failed)
