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
