"""Loading an lm-eval task by name, with lm_eval's own task index (cached on disk, `index.py`),
TaskFactory and ConfigurableTask, its dataset read from local files (no download: the config is
patched to the files the user names). `include` is the operator's own task directories or YAML
files (lm-eval's `include_path`), searched after lm-eval's tasks and overriding them.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.tasks.lmeval import index as task_index
from gemfinder.tasks.lmeval.codeeval import guarded_evaluate_load

FIELD = "--lm-eval-task"
_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserError(
            FIELD,
            "lm-eval is not installed; install gemfinder's extra: pip install 'gemfinder[lm-eval]'",
        ) from None


def task_manager(include: tuple[str, ...] = ()) -> Any:
    """lm_eval's TaskManager (over its tasks plus `include`), built once per process: indexing
    its ~14,000 YAML files takes 9-35 s. Building a query set needs only the cached index."""
    _require_lm_eval()
    return task_index.task_manager(tuple(include))


def parse_data_files(specs: list[str]) -> dict[str, Path]:
    """["test=a.jsonl", "train=b.parquet"] -> {"test": Path, ...}; one format for all files."""
    files: dict[str, Path] = {}
    for spec in specs:
        split, sep, path = spec.partition("=")
        if not sep or not split or not path:
            raise UserError("--data-files", f"expected SPLIT=PATH, got {spec!r}")
        if split in files:
            raise UserError("--data-files", f"split {split!r} given twice")
        p = Path(path)
        if p.suffix.lower() not in _FORMATS:
            raise UserError("--data-files", f"{path}: expected .jsonl, .json, .parquet or .csv")
        if not p.is_file():
            raise UserError("--data-files", f"{path}: no such file")
        files[split] = p
    if len({_FORMATS[p.suffix.lower()] for p in files.values()}) > 1:
        raise UserError("--data-files", "all files must have one format (JSONL, parquet or CSV)")
    return files


def include_paths(paths: list[str], field: str) -> tuple[str, ...]:
    """The operator's task directories, checked and made absolute (lm-eval silently skips a
    path that does not exist, or a file: it indexes the *.yaml files under a directory, so a
    mistake would make the task "unknown" for no visible reason)."""
    out = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            raise UserError(
                field,
                f"{raw}: give the directory holding it (lm-eval indexes a directory's *.yaml)",
            )
        if not p.is_dir():
            raise UserError(field, f"{raw}: no such directory")
        out.append(str(p.resolve()))
    return tuple(out)


def _entry(name: str, include: tuple[str, ...] = ()) -> Any:
    from lm_eval.tasks._index import Kind

    entry, index = task_index.lookup(name, tuple(include))
    if entry is None:
        close = difflib.get_close_matches(name, sorted(index.entries), n=5)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise UserError(FIELD, f"lm-eval has no task {name!r}{hint}")
    if entry.kind in (Kind.GROUP, Kind.TAG):
        raise UserError(
            FIELD,
            f"{name!r} is an lm-eval group or tag of several tasks; name one task of it "
            "(e.g. mmlu_abstract_algebra rather than mmlu)",
        )
    if entry.kind == Kind.PY_TASK:
        raise UserError(
            FIELD, f"{name!r} is defined by a Python class; only YAML tasks are supported"
        )
    return entry


def needed_splits(cfg: dict[str, Any], num_fewshot: int) -> dict[str, str]:
    """The dataset splits lm-eval reads for this config: split name -> what it is used for."""
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    if not eval_split:
        raise UserError(FIELD, f"task {cfg['task']!r} names no test or validation split")
    needs = {eval_split: "the documents to evaluate"}
    fewshot = cfg.get("fewshot_config") or {}
    if num_fewshot > 0 and fewshot.get("samples") is None:
        # lm-eval's order: fewshot_config.split (fewshot_split), else training, else validation.
        split = (
            fewshot.get("split")
            or cfg.get("fewshot_split")
            or cfg.get("training_split")
            or cfg.get("validation_split")
            or eval_split
        )
        needs.setdefault(split, f"the few-shot examples ({num_fewshot}-shot)")
    return needs


CLI_HINT = "Give --data-files SPLIT=PATH"


def patch_to_local_files(
    cfg: dict[str, Any], files: dict[str, Path], num_fewshot: int, hint: str = CLI_HINT
) -> dict[str, Any]:
    """The task config reading `files` instead of the Hub dataset; a clear error when a split
    lm-eval will read is missing. Splits that are named but unused point at the eval file (a
    ConfigurableTask touches the few-shot split even at 0 shots)."""
    if cfg.get("custom_dataset") is not None:
        raise UserError(
            FIELD, f"task {cfg['task']!r} builds its dataset in Python (custom_dataset)"
        )
    needs = needed_splits(cfg, num_fewshot)
    missing = [s for s in needs if s not in files]
    if missing:
        where = cfg.get("dataset_path") or "?"
        if cfg.get("dataset_name"):
            where += f", config {cfg['dataset_name']}"
        wanted = "; ".join(f"{s}: {why}" for s, why in needs.items())
        raise UserError(
            "--data-files",
            f"task {cfg['task']!r} needs local files for split(s) {', '.join(missing)} "
            f"({wanted}); datasets are not downloaded. {hint} (JSONL, "
            f"parquet or CSV rows of the Hugging Face dataset {where})",
        )
    named = {cfg.get(k) for k in ("training_split", "validation_split", "test_split")}
    named |= {cfg.get("fewshot_split"), (cfg.get("fewshot_config") or {}).get("split")}
    unknown = sorted(set(files) - set(needs) - named)
    if unknown:
        raise UserError(
            "--data-files",
            f"task {cfg['task']!r} has no split(s) {', '.join(unknown)} "
            f"(it names {', '.join(sorted(s for s in named if s))}; reads {', '.join(needs)})",
        )
    eval_split = next(iter(needs))
    data_files = {s: str(p) for s, p in files.items()}
    for key in ("training_split", "validation_split", "test_split"):
        if cfg.get(key) and cfg[key] not in data_files:
            data_files[cfg[key]] = data_files[eval_split]
    fewshot = dict(cfg.get("fewshot_config") or {})
    if fewshot.get("split") and fewshot["split"] not in data_files:
        data_files[fewshot["split"]] = data_files[eval_split]
    fmt = _FORMATS[Path(data_files[eval_split]).suffix.lower()]
    return {
        **cfg,
        "dataset_path": fmt,
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }


def config_of(name: str, include: tuple[str, ...] = ()) -> dict[str, Any]:
    """The task's full config as lm-eval resolves it (includes merged, `!function`s imported
    with the code metric guarded): TaskManager's own TaskFactory step, from the index entry."""
    _require_lm_eval()
    from lm_eval.tasks._factory import TaskFactory

    entry = _entry(name, include)
    with guarded_evaluate_load():
        cfg = TaskFactory()._load_full_config(entry, None)
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    return cfg


def _unreadable(files: dict[str, Path], err: Exception) -> str:
    """Why `datasets` could not read `files`: the first JSON file and line that does not parse,
    else the error `datasets` wrapped."""
    for path in files.values():
        if _FORMATS[path.suffix.lower()] != "json":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            json.loads(text)  # a .json file may hold one array rather than JSON lines
            continue
        except ValueError:
            pass
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    return f"{path} line {number}: expected a JSON object (one row per line)"
            except ValueError as bad:
                return f"{path} line {number}: invalid JSON ({getattr(bad, 'msg', bad)})"
    return f"lm-eval could not read the files: {err.__cause__ or err}"


def effective_num_fewshot(cfg: dict[str, Any], requested: int | None) -> int:
    """simple_evaluate's rule: a caller's value overrides, except a config that sets 0."""
    configured = cfg.get("num_fewshot")
    if requested is None or configured == 0:
        return int(configured or 0)
    if requested < 0:
        raise UserError("--num-fewshot", "must be >= 0")
    return requested


def load_task(
    name: str,
    files: dict[str, Path],
    num_fewshot: int | None = None,
    seed: int = 1234,
    include: tuple[str, ...] = (),
    data_hint: str = CLI_HINT,
) -> Any:
    """A lm_eval ConfigurableTask for `name` reading `files`, set up as simple_evaluate sets it
    up (num_fewshot, few-shot sampler seed)."""
    from lm_eval.api.task import ConfigurableTask

    cfg = config_of(name, include)
    shots = effective_num_fewshot(cfg, num_fewshot)
    patched = patch_to_local_files(cfg, files, shots, data_hint)
    from jinja2 import TemplateError

    with guarded_evaluate_load():
        try:
            task = ConfigurableTask(config=patched)
        except TemplateError as err:  # a column the task's templates use is missing
            raise UserError(
                "--data-files", f"the documents do not fit task {name!r}'s templates: {err}"
            ) from None
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise UserError("--data-files", f"lm-eval could not read the files: {err}") from None
        except Exception as err:
            # `datasets` wraps a row it cannot parse in DatasetGenerationError, with no file or
            # line named: say which, rather than print its traceback.
            if type(err).__name__ != "DatasetGenerationError":
                raise
            raise UserError("--data-files", _unreadable(files, err)) from None
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=seed)
    return task
