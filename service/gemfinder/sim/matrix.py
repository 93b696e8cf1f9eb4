"""Correctness matrices (models x items, 0/1): loading, validating and saving.

Formats (architecture.md): `.npy` (uint8 or bool, models x items); `.npz` with `correct`
and optional `models`, `items`, `downloads`, `is_base`; CSV with a header row of item ids
and the model name in the first column.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemfinder.errors import UserError


@dataclass(frozen=True)
class CorrectnessMatrix:
    """A pool of models graded on a query set. `correct[k, i]` is 1 when model k got item i."""

    correct: np.ndarray  # uint8, C-contiguous, shape (models, items)
    models: list[str]
    items: list[str]
    downloads: np.ndarray | None = None  # float64 per model: popularity, for "best base"
    is_base: np.ndarray | None = None  # bool per model: official/base checkpoints

    @property
    def n_models(self) -> int:
        return int(self.correct.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.correct.shape[1])

    def accuracies(self) -> np.ndarray:
        return self.correct.mean(axis=1)


def load_matrix(path: str | Path, field: str = "matrix") -> CorrectnessMatrix:
    """Load and validate a matrix file; every problem is a UserError naming `field`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(field, f"{path} is a directory, not a matrix file")
    if not path.is_file():
        raise UserError(field, f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            _check_magic(path, field, _NPY_MAGIC, "a valid .npy file (NumPy array)")
            return _from_arrays(field, np.load(path, allow_pickle=False))
        if suffix == ".npz":
            _check_magic(path, field, _ZIP_MAGIC, "a valid .npz file (a zip of NumPy arrays)")
            with np.load(path, allow_pickle=False) as archive:
                if "correct" not in archive:
                    raise UserError(field, f"{path.name} has no array named 'correct'")
                return _from_arrays(
                    field,
                    archive["correct"],
                    models=archive["models"] if "models" in archive else None,
                    items=archive["items"] if "items" in archive else None,
                    downloads=archive["downloads"] if "downloads" in archive else None,
                    is_base=archive["is_base"] if "is_base" in archive else None,
                )
        if suffix == ".csv":
            return _load_csv(path, field)
    except UserError:
        raise
    except zipfile.BadZipFile as err:  # a zip cut short or damaged
        raise UserError(field, f"cannot read {path.name}: not a valid .npz file ({err})") from None
    except ValueError as err:
        if "allow_pickle" in str(err):  # an object array: loading it would run pickled code
            raise UserError(
                field,
                f"{path.name} holds an array of Python objects (pickled data), which is "
                "never loaded; save numbers, booleans or strings",
            ) from None
        raise UserError(field, f"cannot read {path.name}: {err}") from None
    except (OSError, EOFError) as err:
        raise UserError(field, f"cannot read {path.name}: {err}") from None
    raise UserError(field, f"unsupported format {suffix!r}; use .npy, .npz or .csv")


_NPY_MAGIC = (b"\x93NUMPY",)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip


def _check_magic(path: Path, field: str, magics: tuple[bytes, ...], what: str) -> None:
    """NumPy reads a file with neither signature as a pickle and, with pickles off, blames
    "pickled (object) data": say plainly that the file is not what its name claims."""
    with path.open("rb") as handle:
        head = handle.read(max(len(m) for m in magics))
    if not any(head.startswith(m) for m in magics):
        shown = "it is empty" if not head else f"it starts with {head[:8]!r}"
        raise UserError(field, f"cannot read {path.name}: not {what}; {shown}")


def save_npz(
    matrix: CorrectnessMatrix, path: str | Path, extra: dict[str, np.ndarray] | None = None
) -> None:
    """Write `matrix` as .npz; `extra` arrays (e.g. a tree's `parent`) go beside it and
    `load_matrix` ignores them."""
    arrays: dict[str, np.ndarray] = {
        "correct": matrix.correct,
        "models": np.asarray(matrix.models, dtype=str),
        "items": np.asarray(matrix.items, dtype=str),
    }
    if matrix.downloads is not None:
        arrays["downloads"] = matrix.downloads
    if matrix.is_base is not None:
        arrays["is_base"] = matrix.is_base
    for key, value in (extra or {}).items():
        if key in arrays:
            raise ValueError(f"extra array {key!r} would replace the matrix's own")
        arrays[key] = value
    np.savez_compressed(path, **arrays)


def _load_csv(path: Path, field: str) -> CorrectnessMatrix:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and all(_is_number(cell) for cell in rows[0]):
        return _bare_csv(path, field, rows)
    if len(rows) < 2:
        raise UserError(field, f"{path.name} needs a header row of item ids and one row per model")
    header, body = rows[0], rows[1:]
    items = header[1:]
    models, values = [], []
    for line_no, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(
                field, f"{path.name} line {line_no}: {len(row)} cells, header has {len(header)}"
            )
        models.append(row[0])
        try:
            values.append([float(cell) for cell in row[1:]])
        except ValueError:
            raise UserError(field, f"{path.name} line {line_no}: a cell is not a number") from None
    return _from_arrays(field, np.asarray(values, dtype=np.float64), models=models, items=items)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _bare_csv(path: Path, field: str, rows: list[list[str]]) -> CorrectnessMatrix:
    width = len(rows[0])
    for line_no, row in enumerate(rows, start=1):
        if len(row) != width:
            raise UserError(
                field, f"{path.name} line {line_no}: {len(row)} cells, line 1 has {width}"
            )
    try:
        values = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise UserError(field, f"{path.name}: a cell is not a number") from None
    return _from_arrays(field, values)


def _from_arrays(
    field: str,
    correct: np.ndarray,
    models: object = None,
    items: object = None,
    downloads: object = None,
    is_base: object = None,
) -> CorrectnessMatrix:
    correct = np.asarray(correct)
    if correct.ndim != 2:
        raise UserError(field, f"expected a 2-D models x items array, got shape {correct.shape}")
    if correct.size == 0:
        raise UserError(field, f"matrix is empty (shape {correct.shape})")
    if correct.dtype != np.bool_ and not np.isin(correct, (0, 1)).all():
        bad = correct[~np.isin(correct, (0, 1))].flat[0]
        raise UserError(field, f"values must be 0 or 1, found {_plain(bad)!r}")
    k, n = correct.shape
    model_names = _names(field, "models", models, k, "model")
    item_names = _names(field, "items", items, n, "item")
    downloads_arr = None
    if downloads is not None:
        try:
            downloads_arr = np.asarray(downloads, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(field, f"'downloads' must be {k} non-negative numbers") from None
        finite = np.isfinite(downloads_arr).all()
        if downloads_arr.shape != (k,) or not finite or (downloads_arr < 0).any():
            raise UserError(field, f"'downloads' must be {k} non-negative numbers")
    is_base_arr = None
    if is_base is not None:
        is_base_arr = np.asarray(is_base, dtype=bool)
        if is_base_arr.shape != (k,):
            raise UserError(field, f"'is_base' must hold {k} flags")
    return CorrectnessMatrix(
        correct=np.ascontiguousarray(correct, dtype=np.uint8),
        models=model_names,
        items=item_names,
        downloads=downloads_arr,
        is_base=is_base_arr,
    )


def _names(field: str, key: str, names: object, count: int, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix}-{i}" for i in range(count)]
    out = [str(x) for x in np.asarray(names).ravel()]
    if len(out) != count:
        raise UserError(field, f"'{key}' has {len(out)} names for {count} rows/columns")
    first: dict[str, int] = {}
    for index, name in enumerate(out):
        if not name.strip():
            raise UserError(field, f"'{key}' has an empty name ({prefix} {index}, 0-based)")
        if name in first:
            dupes = len(out) - len(set(out))
            raise UserError(
                field,
                f"'{key}' must be unique: {name!r} names {prefix} {first[name]} and {prefix} "
                f"{index} (0-based; {dupes} duplicate{'s' if dupes > 1 else ''} in all)",
            )
        first[name] = index
    return out


def _plain(value: object) -> object:
    """A NumPy scalar as the Python number it holds, for messages (0.5, not np.float64(0.5))."""
    return value.item() if isinstance(value, np.generic) else value
