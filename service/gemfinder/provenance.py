"""What produced a search: the software and environment recorded with it when it starts.

Stored with the search (the store's `provenance` column, schema 5) and written as the first line
of `gemfinder export`, so that a samples log says which gemfinder, core, lm-eval and packages
graded it, whatever is installed when it is exported. Versions are read from the running
process; the lock hashes and git commit from the source checkout gemfinder runs from, when it
runs from one (an editable install). The service image has no checkout: it keeps the lock it
installed from in GEMFINDER_LOCKS_DIR and is built with GEMFINDER_GIT_COMMIT set (Dockerfile);
an installed wheel without either says so with null.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from gemfinder import __version__, _core

# The checkout an editable install runs from: service/gemfinder/ -> the repository root.
ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements/runtime.txt", "requirements/dev.txt")
# A directory holding LOCKS (those present) in place of the checkout: the image keeps there the
# lock its packages were installed from.
LOCKS_DIR = "GEMFINDER_LOCKS_DIR"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """The process's part (computed once): versions, lock hashes, installed packages, commit."""
    locks = {}
    base = Path(os.environ[LOCKS_DIR]) if os.environ.get(LOCKS_DIR) else ROOT
    for name in LOCKS:
        path = base / name
        if path.is_file():
            locks[name] = _sha256(path.read_bytes())
    # Every installed distribution and its version: what actually ran, lock or not.
    installed = sorted(
        f"{d.metadata['Name']}=={d.version}".lower()
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    )
    try:
        lm_eval: str | None = importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        lm_eval = None
    return {
        "gemfinder_version": __version__,
        "core_version": _core.__version__,
        "lm_eval_installed": lm_eval,
        "python": platform.python_version(),
        "requirements_lock_sha256": locks or None,
        "installed_packages_sha256": _sha256("\n".join(installed).encode()),
        **_git(),
    }


def _git() -> dict[str, Any]:
    """The checkout's commit and whether it had changes; GEMFINDER_GIT_COMMIT (e.g. set by an
    image build) when there is no checkout."""
    commit = os.environ.get("GEMFINDER_GIT_COMMIT") or None
    dirty = None
    if (ROOT / ".git").exists():
        try:
            head = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            )  # fmt: skip
            commit = head.stdout.strip() or commit
            status = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5, check=True,
            )  # fmt: skip
            dirty = bool(status.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return {"git_commit": commit, "git_dirty": dirty}


def of_search(items: list[Any]) -> dict[str, Any]:
    """The provenance recorded when a search starts: the environment, and for a query set of
    lm_eval records the lm-eval version(s) their prompts were built with."""
    built = sorted(
        {
            str(it.fields["lm_eval"].get("lm_eval_version"))
            for it in items
            if it.task == "lm_eval" and isinstance(it.fields.get("lm_eval"), dict)
        }
    )
    out = dict(environment())
    out["lm_eval_built_with"] = built or None
    if not built:
        out["lm_eval_installed"] = None  # not used by this search
    return out
