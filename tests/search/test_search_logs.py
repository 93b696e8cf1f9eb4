"""The manager logs each search's life at INFO (start, finish with its winner and cost) and a
failure at WARNING, since `gemfinder serve` no longer logs every HTTP request."""

from __future__ import annotations

import logging

from gemfinder.candidates import Candidate
from gemfinder.oracles import OracleResult
from gemfinder.oracles.base import FailureKind
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.store import Store

from tests.fleet_support import make_items


class Oracle:
    def __init__(self, down: bool = False) -> None:
        self.down = down

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        if self.down:
            return OracleResult(candidate.model_id, item.id, None, failure=FailureKind.CONNECTION)
        return OracleResult(candidate.model_id, item.id, int(candidate.model_id == "m1"))

    async def aclose(self) -> None:
        pass


def spec() -> SearchSpec:
    cands = [Candidate(f"m{k}", "http://h:80") for k in range(4)]
    return SearchSpec(cands, make_items(8, tasks=("mmlu",)), budget=24, seed=1)


def messages(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("manager")]


async def test_start_and_success_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="gemfinder.search.manager")
    manager = SearchManager(Store(), Oracle())
    row = await manager.wait((await manager.start(spec(), "job-1")).id)
    logged = messages(caplog)
    started = (
        f"search {row.id} started: 4 candidates, 8 items, budget 24 "
        f"({spec().algorithm}, seed 1, query set inline, request id job-1)"
    )
    assert (logging.INFO, started) in logged
    done = [m for level, m in logged if m.startswith(f"search {row.id} succeeded")]
    assert len(done) == 1 and ": m1 (accuracy 1.000" in done[0] and "verdict" in done[0]


async def test_a_failed_search_is_a_warning(caplog):
    caplog.set_level(logging.INFO, logger="gemfinder.search.manager")
    manager = SearchManager(Store(), Oracle(down=True))
    row = await manager.wait((await manager.start(spec())).id)
    assert row.state == "failed"
    warnings = [m for level, m in messages(caplog) if level == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"search {row.id} failed: ")
