"""lm-eval's task index (task name -> kind and YAML file), cached on disk.

lm_eval's `TaskManager()` walks and parses its ~14,000 YAML files on every construction (9-35 s
on the shared 2-core machine), yet building one task needs only that task's YAML path: lm-eval's
own `TaskFactory._load_full_config` reads the file (includes, `!function`s) from there. So the
walk's result is kept in a JSON file keyed by what decides it: the lm_eval version and
installation, the include paths and the size and modification time of every YAML file under
them. A process whose key matches reads the file (~0.1 s) and never builds a TaskManager; any
change (another lm_eval, a custom YAML edited or added) makes a new key, hence a miss, hence one
TaskManager walk that writes the file again. A name the file lacks, or whose YAML is gone, also
falls back to a fresh walk before it is called unknown.

Where: $GEMFINDER_CACHE_DIR, else $XDG_CACHE_HOME/gemfinder, else ~/.cache/gemfinder. A cache
that cannot be written (read-only home in a container) only costs the walk; it is never an error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the file's layout changes
_lock = threading.Lock()


def cache_dir() -> Path:
    if os.environ.get("GEMFINDER_CACHE_DIR"):
        return Path(os.environ["GEMFINDER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gemfinder"


def _yaml_fingerprint(root: Path) -> list[list[Any]]:
    """(relative path, size, mtime) of every YAML file lm-eval would index under `root`."""
    out = []
    for p in sorted(root.glob("**/*.yaml")):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def cache_key(include: tuple[str, ...]) -> str:
    import lm_eval

    builtin = Path(lm_eval.__file__).parent / "tasks"
    parts = {
        "format": FORMAT,
        "lm_eval": getattr(lm_eval, "__version__", "?"),
        "builtin": str(builtin.resolve()),
        # The shipped tasks change only with the installation (path + version above); the
        # operator's own YAML may change any time, so its files are fingerprinted.
        "include": [
            [str(Path(p).resolve()), _yaml_fingerprint(Path(p).resolve())] for p in include
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TaskIndex:
    """name -> (kind, YAML path or None): lm_eval's `Kind` names ("TASK", "GROUP", "TAG", ...)."""

    entries: dict[str, tuple[str, str | None]]
    include: tuple[str, ...]
    from_cache: bool

    def entry(self, name: str) -> Any | None:
        """lm_eval's `Entry` for `name` (what `TaskFactory` needs), or None."""
        from lm_eval.tasks._index import Entry, Kind

        found = self.entries.get(name)
        if found is None:
            return None
        kind, path = found
        return Entry(name=name, kind=Kind[kind], yaml_path=Path(path) if path else None)

    def stale(self, name: str) -> bool:
        """True when the cache cannot answer for `name`: absent, or its YAML file gone."""
        found = self.entries.get(name)
        return found is None or (found[1] is not None and not Path(found[1]).is_file())


def _from_manager(tm: Any, include: tuple[str, ...]) -> TaskIndex:
    entries = {
        name: (e.kind.name, str(e.yaml_path) if e.yaml_path else None)
        for name, e in tm.task_index.items()
    }
    return TaskIndex(entries, include, from_cache=False)


def _read(path: Path, include: tuple[str, ...]) -> TaskIndex | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {k: (v[0], v[1]) for k, v in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return TaskIndex(entries, include, from_cache=True)


def _write(path: Path, index: TaskIndex) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "include": list(index.include), "entries": index.entries}
        # Written aside and renamed: a concurrent reader sees the old file or the new, never half.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lm-eval-index-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
        os.replace(tmp, path)
    except OSError as err:
        log.info("lm-eval task index not cached (%s): %s", path, err)


@functools.cache
def task_manager(include: tuple[str, ...] = ()) -> Any:
    """lm_eval's TaskManager over its own tasks plus `include`: the slow walk, once per process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include) or None)


def _path(include: tuple[str, ...]) -> Path:
    return cache_dir() / f"lm-eval-index-{cache_key(include)}.json"


_memo: dict[tuple[str, ...], TaskIndex] = {}


def task_index(include: tuple[str, ...] = (), *, refresh: bool = False) -> TaskIndex:
    """The index for lm-eval's tasks plus `include`: from the disk cache when its key matches,
    else (or with `refresh`) from a TaskManager walk, which then rewrites the cache."""
    with _lock:
        if not refresh and include in _memo:
            return _memo[include]
        path = _path(include)
        index = None if refresh else _read(path, include)
        if index is None:
            if refresh:
                task_manager.cache_clear()  # a fresh walk: the files changed under this process
            index = _from_manager(task_manager(include), include)
            _write(path, index)
        _memo[include] = index
        return index


def lookup(name: str, include: tuple[str, ...] = ()) -> tuple[Any | None, TaskIndex]:
    """(lm_eval Entry or None, the index that answered); a cached index that cannot answer for
    `name` is replaced by a fresh walk first, so a stale cache never makes a task unknown."""
    index = task_index(include)
    if index.from_cache and index.stale(name):
        # Said before the walk: a typo (`--lm-eval-task gsm8kk`) otherwise waits 10-30 s silent.
        log.warning(
            "lm-eval task %r is not in the cached task index: indexing lm-eval's tasks again "
            "(10-30 s)",
            name,
        )
        index = task_index(include, refresh=True)
    return index.entry(name), index


def clear_memory() -> None:
    """Forget this process's indexes and TaskManagers (tests; the disk cache stays)."""
    with _lock:
        _memo.clear()
        task_manager.cache_clear()
