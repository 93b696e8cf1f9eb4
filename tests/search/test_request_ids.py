"""A request id names one search: the same spec attaches to it, another spec is refused.

As Google AIP-155 describes request ids: a retry (same id, same spec) returns the existing
search; the same id with a different spec is INVALID_ARGUMENT naming `request_id`, never an
unrelated search. The store keeps a digest of each spec; databases written before it existed
are migrated on open.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import grpc
import pytest
from gemfinder.candidates import Candidate
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import OracleResult
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec, spec_digest
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.store import Store, open_store
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import make_items
from tests.pool_support import spec_proto


class SlowOracle:
    """Answers after a pause, so that a search is still running when it is asked again."""

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        await asyncio.sleep(0.01)
        return OracleResult(candidate.model_id, item.id, int(candidate.model_id == "m0"))

    async def aclose(self) -> None:
        pass


def spec(n_models: int, seed: int = 0) -> SearchSpec:
    cands = [Candidate(f"m{k}", f"http://h{k % 3}:80", adapter_id=f"a{k}") for k in range(n_models)]
    return SearchSpec(cands, make_items(4, tasks=("mmlu",)), budget=10 * n_models, seed=seed)


async def test_same_id_same_spec_attaches_and_another_spec_is_refused(new_db):
    store = open_store(new_db("r.db"))
    manager = SearchManager(store, SlowOracle())
    first = await manager.start(spec(60), "nightly-42")
    assert (await manager.start(spec(60), "nightly-42")).id == first.id  # a retry
    with pytest.raises(UserError) as err:
        await manager.start(spec(3), "nightly-42")
    assert err.value.field == "request_id" and first.id in err.value.reason
    with pytest.raises(UserError):
        await manager.start(spec(60, seed=1), "nightly-42")  # any difference counts
    assert len(manager.list(10, None)) == 1
    await manager.close()
    store.close()


def test_equal_specs_have_equal_digests_also_through_the_store(new_db):
    a, b = spec(5), spec(5)
    assert a.digest() == b.digest() != spec(5, seed=2).digest()
    store = open_store(new_db("r.db"))
    store.create_search("s", "r", a.to_dict())
    row = store.find_request("r")
    assert spec_digest(row.spec) == a.digest() == spec_digest(json.loads(json.dumps(row.spec)))
    assert SearchSpec.from_dict(row.spec).digest() == a.digest()
    store.close()


async def test_a_database_from_before_request_id_checks_compares_its_specs(tmp_path):
    """A database written by an older gemfinder: its searches are found by request id and
    compared by the digest of their stored spec (nothing to migrate)."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE searches (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state TEXT NOT
        NULL, spec TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, progress TEXT,
        result TEXT, error TEXT);"""
    )
    body = spec(4).to_dict()
    old.execute(
        "INSERT INTO searches VALUES ('s1', 'nightly-42', 'succeeded', ?, 1.0, 2.0, NULL, NULL, "
        "NULL)",
        (json.dumps(body),),
    )
    old.commit()
    old.close()
    store = Store(path)
    row = store.find_request("nightly-42")
    assert row.id == "s1" and spec_digest(row.spec) == spec(4).digest()
    manager = SearchManager(store, SlowOracle())
    assert (await manager.start(spec(4), "nightly-42")).id == "s1"  # the same spec attaches
    with pytest.raises(UserError) as err:
        await manager.start(spec(5), "nightly-42")
    assert err.value.field == "request_id" and "s1" in err.value.reason
    await manager.close()
    store.close()


async def test_over_grpc_another_spec_is_invalid_argument_naming_request_id(new_db):
    items = make_items(4, tasks=("mmlu",))
    cands = [Candidate(f"m{k}", f"http://h{k}:80") for k in range(60)]
    config = ServerConfig(
        address="127.0.0.1:0",
        metrics_port=0,
        db=new_db("r.db"),
        allow_endpoint_patterns="http://h*:80",
    )
    server = Server(config, oracle=SlowOracle())
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            big = pb.StartSearchRequest(spec=spec_proto(cands, items), request_id="nightly-42")
            first = (await stub.StartSearch(big)).search
            assert (await stub.StartSearch(big)).search.search_id == first.search_id
            small = spec_proto(cands[:3], items)
            for call, request in (
                (stub.StartSearch, pb.StartSearchRequest(spec=small, request_id="nightly-42")),
                (
                    stub.SelectBestModel,
                    pb.SelectBestModelRequest(spec=small, request_id="nightly-42"),
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(request, timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert first.search_id in err.value.details()
                status = status_pb2.Status.FromString(
                    dict(err.value.trailing_metadata())[DETAILS_KEY]
                )
                bad = error_details_pb2.BadRequest()
                assert status.details[0].Unpack(bad)
                assert bad.field_violations[0].field == "request_id"
    finally:
        await server.stop(0)
