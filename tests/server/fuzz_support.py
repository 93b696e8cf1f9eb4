"""What the two request fuzzers (test_fuzz.py, test_fuzz_hostile.py) share: a small pool whose
server answers from its correctness matrix (ReplayOracle), so that the rare valid request runs a
whole search in milliseconds. The `channel` fixture serving it is in conftest.py."""

from __future__ import annotations

from tests.pool_support import clear_best_pool

MATRIX, ITEMS = clear_best_pool(n_models=6, per_task=3)
SERVICE = "/gemfinder.v1.ModelSearchService/"
