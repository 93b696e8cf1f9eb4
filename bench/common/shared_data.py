"""Where the bench scripts read ../shared/data: in place, as the tests do.

GEMFINDER_SHARED_DATA overrides the default, the `shared/data` folder beside the checkout.
`require` turns a missing data set into a one-line error (exit status 2) before any work,
instead of a traceback from deep inside a loader.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("GEMFINDER_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)

EXIT_MISSING_DATA = 2


def require(*paths: Path, option: str | None = None) -> None:
    """Exit with one line naming the first of `paths` that does not exist and how to point the
    script at the data (`option`: the script's own option for it, e.g. "--data DIR")."""
    for path in paths:
        if not path.exists():
            script = Path(sys.argv[0]).name or "bench"
            how = f", or pass {option}" if option else ""
            print(
                f"{script}: error: reference data not found: {path} does not exist; put the "
                "project's shared/ folder beside the checkout (../shared/data) or set "
                f"GEMFINDER_SHARED_DATA to its data/ folder{how}",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_MISSING_DATA)
