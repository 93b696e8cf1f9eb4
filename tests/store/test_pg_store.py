"""The PostgreSQL store against a real server: what a network database adds to SQLite's failure
modes. A busy pool and a lost server are UNAVAILABLE with a message naming the server (never
a hang, never a wrong answer); a connection the server drops is replaced; a bad --db is one
line naming the flag; the password shows in no error and no log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time

import grpc
import psycopg
import pytest
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.pg_store import PgStore, StoreUnavailable
from gemfinder.server.app import Server
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.pg_support import PASSWORD, SUPERUSER, PostgresServer, find_bin


def _terminate_store_connections(postgres: PostgresServer) -> int:
    return int(
        postgres.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'gemfinder'"
        )
    )


def test_a_full_pool_is_unavailable_after_its_timeout_not_a_hang(postgres):
    store = PgStore(postgres.new_database(), pool_size=2, timeout=0.3)
    try:
        held = [store._pool.getconn() for _ in range(2)]  # e.g. two slow calls in threads
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as err:
            store.get_search("any")
        assert 0.25 < time.monotonic() - began < 2
        message = str(err.value)
        assert "no connection within 0.3 s (pool of 2" in message and "--db" in message
        assert err.value.kind == "unavailable"
        for conn in held:
            store._pool.putconn(conn)
        assert store.get_search("any") is None  # free again: served
    finally:
        store.close()


def test_a_connection_dropped_by_the_server_is_replaced_and_the_call_retried(postgres, caplog):
    store = PgStore(postgres.new_database(), pool_size=1)
    try:
        store.create_search("s1", "r1", {"a": 1})
        store.put_answers("s1", [("k1", 0, 0, 1)])
        assert _terminate_store_connections(postgres) >= 1
        with caplog.at_level(logging.WARNING, logger="gemfinder.pg_store"):
            # A write first (on the writer thread): retried on a new connection, applied once.
            store.put_answers("s1", [("k2", 0, 1, 0), ("k1", 0, 0, 1)])
            assert store.count_evals() == 2  # a read waits for the writes before it
        assert "connection lost" in caplog.text and "retrying" in caplog.text
        assert store.outcomes("s1", [0]) == {0: {0: 1, 1: 0}}
        assert _terminate_store_connections(postgres) >= 1
        assert store.get_search("s1").request_id == "r1"  # a read, likewise
        assert PASSWORD not in caplog.text
    finally:
        store.close()


async def test_a_lost_server_is_unavailable_over_grpc_naming_it_without_the_password(caplog):
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL not installed")  # the session fixture reports it (tests/conftest)
    own = PostgresServer(bin_dir)  # a server of its own, to stop under a running gemfinder
    try:
        url = own.new_database()
        config = ServerConfig(address="127.0.0.1:0", metrics_port=0, db=url)
        server = Server(config)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ModelSearchServiceStub(channel)
                listed = await stub.ListSearches(pb.ListSearchesRequest())
                assert list(listed.searches) == []
                await asyncio.to_thread(own.stop)
                server.store._timeout = 0.5  # how long a call waits for a new connection
                with caplog.at_level(logging.DEBUG):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await stub.GetSearch(pb.GetSearchRequest(search_id="x" * 32))
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                details = err.value.details()
                assert f"postgresql://{SUPERUSER}@127.0.0.1:{own.port}/" in details
                assert "--db" in details
                assert PASSWORD not in details and PASSWORD not in caplog.text
        finally:
            await server.stop(0)
    finally:
        own.stop()


@pytest.mark.parametrize(
    "case",
    ["bad port", "nobody listening", "wrong password", "no such database", "malformed", "option"],
)
def test_a_bad_db_url_is_one_line_naming_the_flag_without_the_password(postgres, case):
    base = f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1"
    url = {
        "bad port": f"{base}:notaport/postgres",
        "nobody listening": f"{base}:1/postgres",
        "wrong password": postgres.url().replace(PASSWORD, PASSWORD + "x"),
        "no such database": postgres.url("nope"),
        "malformed": f"{base}:{postgres.port}/postgres?sslmode",
        "option": f"{base}:{postgres.port}/postgres?not_an_option=1",
    }[case]
    with pytest.raises(UserError) as err:
        PgStore(url, "--db")
    text = str(err.value)
    assert text.startswith("--db: ") and "\n" not in text
    assert PASSWORD not in text, text


def test_a_failed_write_is_raised_by_the_searchs_next_call_and_its_later_writes_dropped(
    postgres,
):
    """Writes leave the event loop (gemfinder.store_writer) but keep SQLite's guarantees: a
    failure reaches the search that wrote, and nothing queued behind it for that search is
    written, so no snapshot lands without the answers it counts. Other searches go on."""
    store = PgStore(postgres.new_database())
    try:
        store.create_search("x", None, {})
        store.create_search("y", None, {})
        store.put_answers("x", [("k1", 0, 0, 70_000)])  # no smallint: fails on the server
        store.save_snapshot("x", b"counts k1")
        store.put_answers("y", [("k2", 0, 0, 1)])
        store._writes.flush()
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            store.put_answers("x", [("k3", 0, 1, 1)])
        assert store.load_snapshot("x") is None  # dropped, not written
        assert store.outcomes("x", [0]) == {0: {}}
        assert store.outcomes("y", [0]) == {0: {0: 1}}  # the other search's write went on
        store.update_search("x", state="failed", error="store")  # reported once: then served
        assert store.get_search("x").state == "failed"
    finally:
        store.close()


def test_serve_reports_a_bad_url_on_one_line_and_logs_no_password(postgres):
    url = postgres.url().replace(PASSWORD, PASSWORD + "x")  # authentication fails
    for args, env in (
        (["--db", url], {}),
        ([], {"GEMFINDER_DB": url}),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
             "--metrics-port", "0", *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--db" in lines[0], proc.stderr
        assert "password authentication failed" in lines[0]
        assert PASSWORD not in proc.stderr + proc.stdout


def test_serve_on_postgres_logs_no_password(postgres, tmp_path):
    """A served and stopped gemfinder at DEBUG: nothing it logs carries the password."""
    url = postgres.new_database()
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
             "--metrics-port", "0", "--log-level", "DEBUG", "--db", url],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            line = proc.stdout.readline()
            assert "listening on" in line, log.read_text()
            port = line.rsplit(":", 1)[1].strip()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ModelSearchServiceStub(channel)
                stub.ListSearches(pb.ListSearchesRequest())
                _terminate_store_connections(postgres)
                stub.ListSearches(pb.ListSearchesRequest())  # retried: a lost connection logged
        finally:
            proc.terminate()
            proc.wait(30)
    text = log.read_text()
    assert "connection lost" in text and "psycopg" in text  # DEBUG lines of the driver too
    assert PASSWORD not in text


def test_an_event_write_run_again_after_its_reply_was_lost_is_stored_once(postgres, caplog):
    """The connection drops after the event's write committed, before its reply: the store runs
    the write again on a new connection, which must not append the event a second time."""
    store = PgStore(postgres.new_database(), pool_size=1)
    real, lost = store._pool.connection, []

    @contextlib.contextmanager
    def reply_lost(*args, **kwargs):
        with real(*args, **kwargs) as conn:
            count = "SELECT count(*) FROM events"
            before = conn.execute(count).fetchone()[0]
            yield conn
            if not lost and conn.execute(count).fetchone()[0] > before:  # an event committed
                lost.append(True)
                conn.close()
                raise psycopg.OperationalError("server closed the connection unexpectedly")

    try:
        store.create_search("s", None, {}, owner="A", lease_s=60.0)
        store.put_event("s", "round_started", None, "running", owner="A")
        store._pool.connection = reply_lost
        with caplog.at_level(logging.WARNING, logger="gemfinder.pg_store"):
            store.put_event("s", "progress", None, "running", owner="A")
            store._writes.flush()
        assert lost and "retrying" in caplog.text  # the write was run twice
        events = store.events_after([("s", 0)], 100)[("s", 0)]
        assert [(e.seq, e.type) for e in events] == [(1, "round_started"), (2, "progress")]
        store.put_event("s", "progress", None, "running", owner="A")  # the log goes on
        store._writes.flush()
        assert store.last_event("s") == (3, "progress")
    finally:
        store._pool.connection = real
        store.close()
