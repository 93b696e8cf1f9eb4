"""The lm-eval tasks a server offers, as its operator registered them, built into items on request.

A request names a task and options (few-shot count, limit, seed, metric, filter); everything that
touches the server's disk or runs code comes from the operator alone: the data files of each
task (`gemfinder serve --lm-eval-tasks FILE`) and directories of custom task YAML, which may
carry `!function` code (`--lm-eval-include DIR`). A name the operator did not register is
refused before lm_eval is even imported, so a request can neither point lm-eval at a file of its
choosing nor make the server walk lm-eval's task index.

The registration file is JSON, task name -> its data: either {split: path} or a directory
holding SPLIT.jsonl / SPLIT.parquet / SPLIT.csv files; relative paths are relative to the file:

    {"gsm8k": {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"},
     "arc_challenge": "arc/"}

Importing this module does not import lm_eval; building does (~2 s once, then the cached index).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.tasks.base import Item
from gemfinder.tasks.query_set import parse_item

_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_DIR_SUFFIXES = (".jsonl", ".parquet", ".csv")
SERVER_HINT = "Ask the server's operator to register them (gemfinder serve --lm-eval-tasks FILE)"
log = logging.getLogger(__name__)
CACHED_SETS = 8  # built query sets kept per server (a 5-shot GSM8K test set: ~7 MB)


class MissingData(UserError):
    """The registered data cannot serve this request (a split it needs is not registered, or a
    file is unreadable): the request is fine, the server is not set up for it."""

    kind = "failed_precondition"
    precondition = "LM_EVAL_DATA_MISSING"  # google.rpc.PreconditionFailure violation type


@dataclass(frozen=True)
class Request:
    """What a caller may choose about an lm-eval query set (never a path or a config)."""

    task: str
    num_fewshot: int | None = None
    limit: int | None = None
    seed: int = 1234
    metric: str | None = None
    filter_name: str | None = None
    fewshot_as_multiturn: bool = True


def _split_files(task: str, value: Any, base: Path, where: str) -> dict[str, Path]:
    if isinstance(value, str):
        folder = (base / value).resolve()
        if not folder.is_dir():
            raise UserError(where, f"task {task!r}: {folder} is not a directory")
        # .jsonl, .parquet, .csv only: a .json beside them is more likely this very file
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _DIR_SUFFIXES}
        if not files:
            raise UserError(where, f"task {task!r}: no SPLIT.jsonl/.parquet/.csv in {folder}")
        return files
    if not isinstance(value, dict) or not value:
        raise UserError(where, f"task {task!r}: expected {{split: path}} or a directory")
    files = {}
    for split, rel in value.items():
        if not isinstance(rel, str):
            raise UserError(where, f"task {task!r}, split {split!r}: expected a path")
        path = (base / rel).resolve()
        if path.suffix.lower() not in _SUFFIXES:
            raise UserError(where, f"task {task!r}: {path}: expected .jsonl, .parquet or .csv")
        if not path.is_file():
            raise UserError(where, f"task {task!r}: no such file {path}")
        files[split] = path
    return files


class Catalog:
    """The operator's registered lm-eval tasks; `items` builds (and keeps) their query sets."""

    def __init__(self, tasks: dict[str, dict[str, Path]], include: tuple[str, ...] = ()) -> None:
        self.tasks = tasks
        self.include = include
        self._built: OrderedDict[Request, list[Item]] = OrderedDict()
        # One build at a time: lm-eval patches module state while building (and a second
        # request for the same set waits for the first instead of building it again).
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str, include: tuple[str, ...], where: str) -> Catalog:
        if not path:
            return cls({}, include)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise UserError(where, f"cannot read {path}: {err.strerror}") from None
        except ValueError as err:
            raise UserError(where, f"{path}: not JSON ({err})") from None
        if not isinstance(raw, dict):
            raise UserError(where, f"{path}: expected an object of task name -> data files")
        base = Path(path).resolve().parent
        tasks = {name: _split_files(name, v, base, where) for name, v in raw.items()}
        return cls(tasks, include)

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def warm(self) -> None:
        """Import lm_eval and load its task index (from the disk cache, or by a walk that fills
        it): the one-time costs of the first build, paid ahead. Never raises: a problem shows
        again, with its field, on the request that meets it."""
        try:
            from gemfinder.tasks.lmeval import build, index  # noqa: F401 - the import is the work

            known = index.task_index(self.include).entries
            # An operator's typo, said at start rather than at the first request. The names
            # only (no lookup): that imports lm_eval.tasks, racing a request's build importing
            # it on another thread (a partly initialised module, an ImportError).
            for name in self.tasks:
                if name not in known:
                    log.warning(
                        "--lm-eval-tasks registers %r, which is not an lm-eval task (nor one of "
                        "--lm-eval-include's): a request naming it will be refused",
                        name,
                    )
        except Exception:  # noqa: BLE001
            log.warning("warming lm-eval's task index failed", exc_info=True)

    def check(self, req: Request, field: str) -> None:
        """The request's names, checked without lm_eval (cheap; on the event loop)."""
        if req.task in self.tasks:
            return
        known = (
            ", ".join(sorted(self.tasks)) or "none: the server was started without --lm-eval-tasks"
        )
        if not req.task:
            raise UserError(f"{field}.task", f"required: a registered lm-eval task ({known})")
        raise UserError(f"{field}.task", f"task not registered on this server ({known})")

    def items(self, req: Request, field: str) -> list[Item]:
        """The query set for `req` (blocking: run it off the event loop)."""
        self.check(req, field)
        with self._lock:
            if req in self._built:
                self._built.move_to_end(req)
                return self._built[req]
            items = self._build(req, field)
            self._built[req] = items
            while len(self._built) > CACHED_SETS:
                self._built.popitem(last=False)
            return items

    def _build(self, req: Request, field: str) -> list[Item]:
        from gemfinder.tasks.lmeval.build import build_query_set

        # The CLI's flags, as the build names them, -> this request's fields.
        fields = {
            "--num-fewshot": "num_fewshot",
            "--limit": "limit",
            "--metric": "metric",
            "--filter": "filter",
        }
        try:
            records = build_query_set(
                req.task,
                self.tasks[req.task],
                num_fewshot=req.num_fewshot,
                limit=req.limit,
                seed=req.seed,
                metric=req.metric,
                filter_name=req.filter_name,
                include=self.include,
                data_hint=SERVER_HINT,
                fewshot_as_multiturn=req.fewshot_as_multiturn,
            )
        except UserError as err:
            if err.field == "--data-files":
                sub = "num_fewshot" if req.num_fewshot else "task"
                raise MissingData(f"{field}.{sub}", err.reason) from None
            raise UserError(f"{field}.{fields.get(err.field, 'task')}", err.reason) from None
        items = []
        for i, rec in enumerate(records):
            try:
                line = json.dumps(rec, ensure_ascii=False)
            except TypeError as err:  # a parquet cell JSON cannot hold
                raise MissingData(f"{field}.task", f"a document is not JSON: {err}") from None
            items.append(parse_item(line, f"{field} (document {i})"))
        return items
