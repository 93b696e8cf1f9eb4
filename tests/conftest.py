"""Shared fixtures. Reference data is read in place from ../shared/data, never copied.

Without the data the tests that need it skip, saying what is missing; `.ci/run` sets
GEMFINDER_REQUIRE_SHARED_DATA=1 so that CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEMFINDER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        missing = (
            f"reference data not found at {SHARED_DATA}: clone gemfinder beside the project's "
            "shared/ folder (../shared/data) or set GEMFINDER_SHARED_DATA to its data/ folder"
        )
        if os.environ.get("GEMFINDER_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(missing + " (required: GEMFINDER_REQUIRE_SHARED_DATA=1)")
        pytest.skip(missing)
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/pg_support.py): skips, saying why, when
    the binaries are absent, unless GEMFINDER_REQUIRE_POSTGRES=1 (.ci/run sets it)."""
    from tests.pg_support import MISSING, PostgresServer, find_bin

    bin_dir = find_bin()
    if bin_dir is None:
        if os.environ.get("GEMFINDER_REQUIRE_POSTGRES") == "1":
            pytest.fail(MISSING + " (required: GEMFINDER_REQUIRE_POSTGRES=1)")
        pytest.skip(MISSING)
    server = PostgresServer(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request, tmp_path):
    """new_db(name) -> the --db value of a new, empty database of each store backend: a SQLite
    file in tmp_path, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return lambda name: str(tmp_path / name)
    server = request.getfixturevalue("postgres")
    return lambda name: server.new_database()
