"""lm-eval's `multi_choice_regex` filter with its punctuation table built once per process.

lm-eval's MultiChoiceRegexFilter.apply builds `punct_tbl` (every Unicode code point whose
category starts with "P") on every call, by walking all of `range(sys.maxunicode)`: ~0.14 s of
CPU for each graded answer, whatever the answer or the settings. The table depends on nothing
but the Python build's Unicode data, so gemfinder computes it once per process and runs
lm-eval's own `apply` otherwise unchanged: the function is recompiled from lm-eval's installed
source with that one assignment's value replaced by a call to a memoized function that
evaluates the original expression (the expression is lm-eval's, read from the same source).
Everything else - regexes, fallbacks, letters, `filter_ignores` - is lm-eval's code, so the
extracted answers are lm-eval's (tests/tasks/lm_eval/test_lm_eval_mcregex.py compares them with
the unmodified filter on the shipped tasks' settings and fuzzed answers).

If the installed lm-eval's `apply` no longer has that shape (no single `punct_tbl = <expression
of sys, unicodedata, range, chr>` assignment, or its source cannot be read), the filter is
lm-eval's own class, unchanged and slow, and a warning says so.
"""

from __future__ import annotations
import __future__

import ast
import functools
import inspect
import logging
import sys
import textwrap
from typing import Any

log = logging.getLogger(__name__)
NAME = "multi_choice_regex"
_TABLE_FN = "_gemfinder_punct_tbl"
# Names the table's expression may use: anything else could depend on the call.
_TABLE_NAMES = frozenset(("chr", "dict", "i", "range", "sys", "unicodedata"))


def _patched_apply(cls: type) -> Any | None:
    """cls.apply with `punct_tbl = ...` evaluated once per process, or None if its source is
    not the shape this patch knows."""
    module = sys.modules[cls.__module__]
    try:
        source = textwrap.dedent(inspect.getsource(cls.apply))
        _, first_line = inspect.getsourcelines(cls.apply)
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    fn = tree.body[0]
    if not isinstance(fn, ast.FunctionDef) or fn.decorator_list:
        return None
    names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
    if "super" in names or "__class__" in names:  # would need the class cell
        return None
    assigns = [
        n
        for n in ast.walk(fn)
        if isinstance(n, ast.Assign)
        and [getattr(t, "id", None) for t in n.targets] == ["punct_tbl"]
    ]
    if len(assigns) != 1:
        return None
    value = assigns[0].value
    if not {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} <= _TABLE_NAMES:
        return None
    expr = compile(ast.Expression(value), module.__file__ or "<lm_eval>", "eval")

    @functools.cache
    def table() -> dict[int, None]:
        import unicodedata

        return eval(expr, {"sys": sys, "unicodedata": unicodedata})  # noqa: S307 - lm-eval's

    assigns[0].value = ast.Call(ast.Name(_TABLE_FN, ast.Load()), [], [])
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point into lm-eval's file
    namespace = dict(vars(module))
    namespace[_TABLE_FN] = table
    code = compile(
        tree,
        module.__file__ or "<lm_eval>",
        "exec",
        flags=__future__.annotations.compiler_flag,  # lm-eval's annotations name TYPE_CHECKING
        dont_inherit=True,
    )
    exec(code, namespace)  # noqa: S102 - lm-eval's own source, one assignment replaced
    return namespace[fn.name]


@functools.cache
def filter_class() -> type:
    """The class `multi_choice_regex` steps are built with: lm-eval's, its table memoized."""
    from lm_eval.filters.extraction import MultiChoiceRegexFilter

    apply = _patched_apply(MultiChoiceRegexFilter)
    if apply is None:
        log.warning(
            "lm-eval's MultiChoiceRegexFilter.apply has changed shape: multi_choice_regex is "
            "graded by lm-eval's own filter (~0.14 s per answer)"
        )
        return MultiChoiceRegexFilter
    return type(
        "MultiChoiceRegexFilter",
        (MultiChoiceRegexFilter,),
        {"apply": apply, "__module__": __name__, "__doc__": MultiChoiceRegexFilter.__doc__},
    )
