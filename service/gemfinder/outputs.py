"""Files the user asked a command to write: checked before the work starts, written whole, and
never replaced unless asked; every problem a UserError naming the flag.

Written whole means a temporary file beside the target, then renamed into place, so a reader
polling for the file (a script waiting for `fleet serve --candidates-out`) never sees half of
it. Without `overwrite` the temporary file is hard-linked to the target instead of renamed,
which fails if the target exists, so an existing file is never replaced, even by a race.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gemfinder.errors import UserError


def check_writable(
    path: str | Path, flag: str, *, suffix: str | None = None, overwrite: bool = True
) -> Path:
    """The target as a Path, or a UserError if it cannot be written: a wrong suffix, a
    directory, an existing file without `overwrite`, a missing or read-only directory."""
    target = Path(path)
    if suffix is not None and target.suffix.lower() != suffix:
        raise UserError(flag, f"{target} must end in {suffix}")
    if target.is_dir():
        raise UserError(flag, f"{target} is a directory")
    if not overwrite and target.exists():
        raise UserError(flag, f"{target} exists; pass --force to replace it")
    parent = target.parent
    if not parent.is_dir():
        raise UserError(flag, f"cannot write {target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(flag, f"cannot write {target}: directory {parent} is not writable")
    return target


def write_whole(path: str | Path, text: str, flag: str, *, overwrite: bool = True) -> None:
    """Write `text` (UTF-8) to `path` whole; see the module docstring."""
    target = check_writable(path, flag, overwrite=overwrite)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
    except FileExistsError:
        raise UserError(flag, f"{target} exists; pass --force to replace it") from None
    except OSError as err:
        raise UserError(flag, f"cannot write {target}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def not_an_input(path: str | Path | None, flag: str, *inputs: str | Path | None) -> None:
    """Refuse an output that is one of the command's inputs (`grade a.jsonl --out a.jsonl`,
    `export --db run.db --out run.db`): opening it for writing would empty the input before it
    is read, or destroy a store. Inputs that are not files (stdin's "-", a postgresql:// URL,
    none given) are skipped."""
    if not path or path == "-" or not os.path.exists(path):
        return
    for source in inputs:
        if source and source != "-" and os.path.isfile(source) and os.path.samefile(path, source):
            raise UserError(flag, f"{path} is an input of this command; write to another file")
