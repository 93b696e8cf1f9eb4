"""The regular expressions a caller may put in an inline `lm_eval` item sent over gRPC.

lm-eval grades with Python's `re`, which holds the GIL for a whole match: a pattern such as
`(a+)+$` against a reply of a's ending in `!` backtracks for ever and freezes every RPC of the
server, not only the caller's search (issue #12). `re` has no time limit and grading must stay
lm-eval's (parity), so the service restricts the patterns instead: an inline item may name a
pattern only if lm-eval itself ships it in a task YAML, or the operator's `--lm-eval-include`
YAML holds it. The local CLI, whose user is the operator, is not restricted.

Where a pattern reaches `re` in an item (`check` walks each):
- a filter step's `regex_pattern` (`regex`, `multi_choice_regex`; `regex_pos` compiles it);
- a `multi_choice_regex` step's `regexes_to_ignore`;
- the metric's `regexes_to_ignore` (exact_match's `re.sub` on the reply and the target).

Two shipped patterns are left out: their cost grows with the square of the reply (measured on
a 16,000-character reply: `\\s+$` 1.7 s on a run of spaces, `(?s).*#### ` 0.14 s on any text
without `#### ` and 2.2 s on a run of `#`; a 1 MiB reply would take hours), and an inline item
chooses its own `max_gen_toks`. Every other shipped pattern was linear on the same probes
(tests/tasks/lm_eval/test_lm_eval_hostile_recipes.py). A registered task (query_set.lm_eval)
may still use them, and the operator's YAML any pattern: an endpoint may ignore max_gen_toks, so
such answers are graded under a time limit, in a process that can be killed (quick_to_grade
below; oracles.grading_pool).

The allowed set is read from the YAML text (only files that mention "regex": 91 of lm-eval
0.4.13's ~14,000), once per process, and kept on disk beside the task index, under the same key
(lm_eval version and installation, the include files' sizes and times).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from gemfinder.tasks.lmeval import index

log = logging.getLogger(__name__)
PATTERN_KEYS = ("regex_pattern", "regexes_to_ignore")
WHY = (
    "an inline lm_eval item sent to the server may use only a regular expression lm-eval ships "
    "in a task YAML or one in the operator's --lm-eval-include YAML (Python's re holds the "
    "server's lock for a whole match: one pathological pattern would freeze every caller); "
    "name a registered lm-eval task (query_set.lm_eval) or ask the operator to add the pattern"
)
# Shipped, but quadratic in the reply's length (above): never from an inline item.
SUPERLINEAR = frozenset((r"\s+$", r"(?s).*#### "))
# The longest answer graded in-process under a SUPERLINEAR pattern: at most ~30 ms of `re` on
# the worst probes (2,000 characters: ~100 ms, 8,000: ~1.4 s, on the shared 2-core machine).
# gsm8k's own exact_match ignores `(?s).*#### `, and its answers are mostly shorter.
QUADRATIC_INLINE_CHARS = 1_000
# Filter steps whose own work is linear in the reply (their fixed patterns were probed with the
# shipped ones). Not `multi_choice_regex`: it searches the answer for an alternation of the
# document's choices, whose cost is the answer's length times their total length (6.5 s for
# 256,000 characters against 40 choices of 1,000), and an inline item chooses its document; so
# it is graded in a grading process (its Unicode table is built once per process: mcregex).
LINEAR_STEPS = frozenset(
    ("format_span", "lowercase", "majority_vote", "map", "regex", "regex_pos",
     "remove_whitespace", "take_first", "take_first_k", "uppercase")
)  # fmt: skip
_lock = threading.Lock()


class _Loader:
    """A YAML loader that reads lm-eval's tags (`!function utils.x`) as plain values."""

    @staticmethod
    def make() -> Any:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def any_tag(loader: Any, suffix: str, node: Any) -> Any:
            if isinstance(node, yaml.ScalarNode):
                return loader.construct_scalar(node)
            if isinstance(node, yaml.SequenceNode):
                return loader.construct_sequence(node)
            return loader.construct_mapping(node)

        Loader.add_multi_constructor("!", any_tag)
        return Loader


def _collect(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in PATTERN_KEYS:
                out.update(
                    p for p in ([v] if isinstance(v, str) else v or []) if isinstance(p, str)
                )
            else:
                _collect(v, out)
    elif isinstance(value, list):
        for v in value:
            _collect(v, out)


def scan(roots: list[Path]) -> set[str]:
    """Every `regex_pattern` / `regexes_to_ignore` string in the YAML files under `roots`."""
    import yaml

    loader = _Loader.make()
    found: set[str] = set()
    for root in roots:
        for path in sorted(root.glob("**/*.yaml")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "regex" not in text:
                continue
            try:
                for doc in yaml.load_all(text, Loader=loader):  # noqa: S506 - SafeLoader
                    _collect(doc, found)
            except yaml.YAMLError as err:
                log.info("lm-eval patterns: %s not read: %s", path, err)
    return found


def _roots(include: tuple[str, ...]) -> list[Path]:
    import lm_eval

    return [Path(lm_eval.__file__).parent / "tasks", *(Path(p).resolve() for p in include)]


_memo: dict[tuple[str, ...], frozenset[str]] = {}


def allowed(include: tuple[str, ...] = ()) -> frozenset[str]:
    """The patterns inline items may name (blocking: the first call in a process reads the disk
    cache or scans the YAML, seconds; run it off the event loop). Without lm_eval: none."""
    with _lock:
        if include in _memo:
            return _memo[include]
        try:
            key = index.cache_key(include)
        except ImportError:  # lm_eval absent: such items cannot be graded here anyway
            return frozenset()
        path = index.cache_dir() / f"lm-eval-patterns-{key}.json"
        try:
            patterns = frozenset(json.loads(path.read_text(encoding="utf-8"))["patterns"])
        except (OSError, ValueError, KeyError, TypeError):
            patterns = frozenset(scan(_roots(include)))
            _write(path, patterns)
        patterns -= SUPERLINEAR
        _memo[include] = patterns
        return patterns


def quick_to_grade(fields: dict[str, Any], length: int) -> bool:
    """Whether grading a generate_until item's answer of `length` characters is known to be
    quick: its steps are LINEAR_STEPS and its patterns lm-eval's linear ones; or, for an answer
    of at most QUADRATIC_INLINE_CHARS, lm-eval's quadratic ones (gsm8k's exact_match ignores
    `(?s).*#### `). Anything else - the operator's own patterns (--lm-eval-include), which are
    not known, or a long answer under a quadratic pattern - is graded in a grading process
    under a time limit (oracles.grading_pool)."""
    flt = fields.get("filter")
    steps = flt.get("steps") if isinstance(flt, dict) else None
    if not isinstance(steps, list) or any(
        not isinstance(step, list) or not step or step[0] not in LINEAR_STEPS for step in steps
    ):
        return False
    try:
        linear = allowed(())
        if check(fields, linear) is None:
            return True
        return length <= QUADRATIC_INLINE_CHARS and check(fields, linear | SUPERLINEAR) is None
    except Exception:  # noqa: BLE001 - a malformed recipe: let the guarded path report it
        return False


def _write(path: Path, patterns: frozenset[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lm-eval-patterns-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"format": index.FORMAT, "patterns": sorted(patterns)}, fh)
        os.replace(tmp, path)
    except OSError as err:  # an unwritable cache only costs the scan
        log.info("lm-eval patterns not cached (%s): %s", path, err)


def _check_list(value: Any, where: str, ok: frozenset[str]) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return where, "must be a list of regular expressions"
    for i, p in enumerate(value):
        if not isinstance(p, str) or p not in ok:
            return f"{where}[{i}]", WHY
    return None


def check(fields: dict[str, Any], ok: frozenset[str]) -> tuple[str, str] | None:
    """(path under fields_json, reason) of the first pattern not in `ok`, or None. `fields`
    passed LmEvalTask.validate (filter steps are [name, kwargs or null] pairs)."""
    kwargs = fields.get("metric", {}).get("kwargs") or {}
    if kwargs.get("regexes_to_ignore") is not None:
        bad = _check_list(kwargs["regexes_to_ignore"], "metric.kwargs.regexes_to_ignore", ok)
        if bad:
            return bad
    flt = fields.get("filter")
    for j, (_, step) in enumerate(flt["steps"] if isinstance(flt, dict) else []):
        where = f"filter.steps[{j}][1]"
        if not step:
            continue
        pattern = step.get("regex_pattern")
        if "regex_pattern" in step and not (isinstance(pattern, str) and pattern in ok):
            return f"{where}.regex_pattern", WHY
        if step.get("regexes_to_ignore") is not None:
            bad = _check_list(step["regexes_to_ignore"], f"{where}.regexes_to_ignore", ok)
            if bad:
                return bad
    return None
