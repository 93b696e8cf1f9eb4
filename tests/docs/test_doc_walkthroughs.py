"""Every code block of README.md and docs/*.md runs as written, or says in the doc why not.

One test per document: its blocks run in order in one shared directory (tests/docs/
walkthrough.py), so a walkthrough that starts a fleet, then a server, then calls it, runs as a
reader would run it. A block is left out only for a `<!-- doc-test: skip, REASON -->` marker
right above it (tests/docs/blocks.py); any other block that cannot run fails the test, so a
new block cannot slip through untested.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import SHARED_DATA
from tests.docs.walkthrough import REPO, run_doc

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_blocks_run(doc, tmp_path):
    data = SHARED_DATA if SHARED_DATA.is_dir() else None
    left_out = run_doc(doc, tmp_path, data)
    if left_out:
        missing = (
            f"reference data not found at {SHARED_DATA}, needed by {', '.join(left_out)}: clone "
            "gemfinder beside the project's shared/ folder or set GEMFINDER_SHARED_DATA"
        )
        if os.environ.get("GEMFINDER_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(missing + " (required: GEMFINDER_REQUIRE_SHARED_DATA=1)")
        pytest.skip(missing + " (the other blocks ran)")
