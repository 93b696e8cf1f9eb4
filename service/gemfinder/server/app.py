"""Wire and run the gRPC server: service, health, reflection, interceptors, TLS, metrics port.

Shutdown order: health to NOT_SERVING (which ends every Health.Watch once sent), end every
WatchSearch and every SelectBestModel waiting for a search with UNAVAILABLE (their clients resume
or retry on another replica), stop accepting and give the other running calls `grace_s`, then
stop the search runners without marking them cancelled and release their leases (another
replica takes them over at once; with none, they resume on the next start).

A port another process listens on is a UserError naming it (gRPC would otherwise share it by
SO_REUSEPORT, splitting clients between two servers and two databases), as is a database path
that cannot be used.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.metrics import hook_oracle_stats
from gemfinder.oracles import (
    EndpointConfig,
    InferenceOracle,
    Oracle,
    OracleStats,
    RetryPolicy,
    load_endpoint_configs,
    transport,
)
from gemfinder.oracles.allowlist import EndpointAllowlist
from gemfinder.search.manager import SearchManager
from gemfinder.server.interceptors import AuthInterceptor, ErrorInterceptor, MetricsInterceptor
from gemfinder.server.service import ModelSearchService
from gemfinder.store import open_store
from gemfinder.tasks import load_query_set, sandbox
from gemfinder.tasks.lmeval.catalog import Catalog
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
MAX_SEND_BYTES = 64 * 1024 * 1024
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelSearchService"].full_name


def default_oracle(config: ServerConfig, endpoints: list[EndpointConfig]) -> Oracle:
    """The live-endpoint oracle: in this process, or in `--workers` processes."""
    settings = {
        "policy": RetryPolicy(timeout_s=config.request_timeout_s),
        "stats": hook_oracle_stats(OracleStats()),
        "default_concurrency": config.endpoint_concurrency,
        "max_answer_bytes": config.max_answer_bytes,
        "grading_timeout_s": config.grading_timeout_s,
        "grading_workers": config.grading_workers,
    }
    if config.workers:
        from gemfinder.oracles.workers import WorkerOracle

        return WorkerOracle(
            endpoints,
            workers=config.workers,
            executor=config.executor,
            log_level=config.log_level,
            **settings,
        )
    return InferenceOracle(endpoints, **settings)


class Server:
    def __init__(self, config: ServerConfig, oracle: Oracle | None = None) -> None:
        self.config = config
        if config.executor:
            # MBPP programs run in that executor, away from this process's token and store.
            sandbox.configure_executor(config.executor)
        self.query_sets = {
            name: load_query_set(path) for name, path in config.query_set_paths().items()
        }
        # The lm-eval tasks callers may name, with the operator's data files (no lm_eval import).
        self.lm_eval = Catalog.load(
            config.lm_eval_tasks, config.lm_eval_include_paths(), "--lm-eval-tasks"
        )
        endpoints = load_endpoint_configs(config.endpoints) if config.endpoints else []
        # The endpoints file is also the list of endpoints callers may name (oracles.allowlist).
        self.allowlist = EndpointAllowlist.build(
            (c.key for c in endpoints),
            config.endpoint_patterns(),
            any=config.allow_any_endpoint,
        )
        self.oracle = oracle or default_oracle(config, endpoints)
        # The HTTP client stack, imported and its SSL context built before any request: the
        # first StartSearch of a process did it on the event loop (oracles.transport.warm).
        transport.warm()
        self.store = open_store(config.db, option="--db")
        self.manager = SearchManager(
            self.store,
            self.oracle,
            max_active=config.max_active_searches,
            allowlist=self.allowlist,
            replica_id=config.replica_id,
            lease_s=config.lease_seconds,
            lm_eval_include=self.lm_eval.include,
        )
        self.health = HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self._metrics_server = None
        self.health_port = 0
        self._health_server: grpc.aio.Server | None = None  # --health-port
        self._warm: asyncio.Future | None = (
            None  # the lm-eval index warming, when tasks are registered
        )
        self._server = grpc.aio.server(
            interceptors=[MetricsInterceptor(), AuthInterceptor(config.token), ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                # Responses are the server's own (a result of max_candidates models): not
                # limited by what a request may be.
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                # One server per port: with SO_REUSEPORT (gRPC's default on Linux) a second
                # server would bind the same port and take half of the connections.
                ("grpc.so_reuseport", 0),
            ],
        )
        service = ModelSearchService(
            self.manager,
            self.query_sets,
            config.default_queries_per_model,
            config.limits,
            self.lm_eval,
        )
        pb_grpc.add_ModelSearchServiceServicer_to_server(service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self._server)

    async def start(self) -> int:
        try:
            return await self._start()
        except UserError:  # nothing is served: let go of the database and the clients
            await self.oracle.aclose()
            self.store.close()
            raise

    async def _start(self) -> int:
        host, _, port = self.config.address.rpartition(":")
        if not host or not port.isdigit():
            raise UserError("address", f"expected host:port, got {self.config.address!r}")
        _check_free("--address", host, int(port))
        try:
            if self.config.tls_cert:
                key = Path(self.config.tls_key).read_bytes()
                cert = Path(self.config.tls_cert).read_bytes()
                creds = grpc.ssl_server_credentials([(key, cert)])
                self.port = self._server.add_secure_port(self.config.address, creds)
            else:
                self.port = self._server.add_insecure_port(self.config.address)
        except RuntimeError:  # gRPC says only "Failed to bind"; a race with _check_free
            raise UserError(
                "--address", f"cannot listen on {self.config.address} (in use, or not local)"
            ) from None
        start = getattr(self.oracle, "start", None)  # oracle workers (--workers)
        if start is not None:
            await start()
        await self._server.start()
        if self.config.health_port:
            try:
                await self._start_health_server(host)
            except UserError:
                await self._server.stop(0)  # or the loop closes under a live server
                raise
        if self.config.metrics_port:
            try:
                self._metrics_server, _ = start_http_server(
                    self.config.metrics_port,
                    addr=host.strip("[]"),  # an IPv6 host bare
                )
            except OSError as err:
                await self._server.stop(0)  # or the loop closes under a live server
                reason = "already in use" if err.errno == errno.EADDRINUSE else err.strerror
                raise UserError(
                    "--metrics-port",
                    f"cannot serve metrics on {host}:{self.config.metrics_port}: {reason}",
                ) from None
            self.metrics_port = self._metrics_server.server_port
        if self.allowlist.any:
            log.warning(
                "--allow-any-endpoint: callers may name any endpoint URL and the server will "
                "connect to it; for development and demos only, never on a shared network"
            )
        elif self.allowlist.empty:
            log.warning(
                "no --endpoints file and no --allow-endpoint-patterns: every search will be "
                "refused (PERMISSION_DENIED), since callers may only name endpoints listed there"
            )
        resumed = await self.manager.resume_all()
        if resumed:
            log.info("resumed %d unfinished searches", len(resumed))
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.lm_eval:
            # Import lm_eval and read (or walk, on a cold cache) its task index now, on a
            # worker thread, so that the first request naming a task does not pay for it.
            self._warm = asyncio.get_running_loop().run_in_executor(None, self.lm_eval.warm)
        return self.port

    async def _start_health_server(self, host: str) -> None:
        """The health service alone, in plaintext, on --health-port: Kubernetes' gRPC probes
        speak no TLS, and against a TLS port every probe failed."""
        _check_free("--health-port", host, self.config.health_port)
        self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        try:
            self.health_port = self._health_server.add_insecure_port(
                f"{host}:{self.config.health_port}"
            )
        except RuntimeError:  # gRPC says only "Failed to bind"; a race with _check_free
            raise UserError(
                "--health-port", f"cannot listen on {host}:{self.config.health_port}"
            ) from None
        await self._health_server.start()

    async def stop(self, grace: float | None = None) -> None:
        await self.health.enter_graceful_shutdown()
        self.manager.stop_serving()  # watches and waits end now: their clients go elsewhere
        await self._server.stop(self.config.grace_s if grace is None else grace)
        if self._health_server is not None:  # probes saw NOT_SERVING until the API stopped
            await self._health_server.stop(0)
        await self.manager.close()
        await self.oracle.aclose()
        self.store.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()

    async def wait(self) -> None:
        await self._server.wait_for_termination()


class _HealthEnded(Exception):
    """Ends a Health.Watch once it has told its client NOT_SERVING at shutdown."""


class _EndAtShutdown:
    """A Watch call's context whose write ends the call after a status sent at shutdown."""

    def __init__(self, servicer: HealthServicer, context) -> None:
        self._servicer = servicer
        self._context = context

    async def write(self, message) -> None:
        await self._context.write(message)
        if self._servicer.shutting_down:
            raise _HealthEnded

    def __getattr__(self, name: str):
        return getattr(self._context, name)


class HealthServicer(health.aio.HealthServicer):
    """grpc_health's servicer, whose Watch ends (OK) once NOT_SERVING is sent at shutdown: its
    own streams forever, and a client watching (Envoy, gRPC client-side health checking) held
    every stop for the whole --grace-s before the searches were handed over."""

    @property
    def shutting_down(self) -> bool:
        return self._gracefully_shutting_down

    async def Watch(self, request, context) -> None:  # noqa: N802 - the gRPC method's name
        try:
            await super().Watch(request, _EndAtShutdown(self, context))
        except _HealthEnded:
            pass


def _check_free(option: str, host: str, port: int) -> None:
    """UserError when something already listens on host:port. gRPC would log a C-level line
    and raise a bare RuntimeError; this names the address (the bind itself stays the check)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return  # gRPC reports what it cannot resolve
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            try:
                sock.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise UserError(
                        option, f"{host}:{port} is already in use (another gemfinder serve?)"
                    ) from None
