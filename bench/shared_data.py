"""Where the bench scripts read ../shared/data: in place, as the tests do.

GEMFINDER_SHARED_DATA overrides the default, the `shared/data` folder beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("GEMFINDER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
