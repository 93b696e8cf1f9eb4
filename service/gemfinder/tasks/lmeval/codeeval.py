"""lm-eval's code metric (HF `evaluate.load("code_eval")`) replaced by gemfinder's sandbox.

lm-eval's mbpp and humaneval utils call `evaluate.load("code_eval")` when imported: it downloads
the metric's code from the Hub and later runs model-written programs in this process, unsandboxed.
While a task is loaded, `guarded_evaluate_load()` swaps `evaluate.load` so that "code_eval" is
`SandboxCodeEval` (same inputs and output, programs run by gemfinder.tasks.sandbox) and any other
`evaluate.load` is refused: nothing is downloaded and nothing runs outside the sandbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from gemfinder.errors import UserError

# code_eval's own default timeout per program (evaluate/metrics/code_eval/code_eval.py).
CODE_EVAL_TIMEOUT_S = 3.0


def code_eval_program(candidate: str, test_case: str) -> str:
    """The program code_eval runs for one candidate: the code, a newline, the tests."""
    return candidate + "\n" + test_case


def run_candidate(candidate: str, test_case: str, timeout_s: float = CODE_EVAL_TIMEOUT_S) -> bool:
    from gemfinder.tasks import sandbox  # imported here: only code grading needs it

    return sandbox.run_program(code_eval_program(candidate, test_case), timeout_s=timeout_s).passed


class SandboxCodeEval:
    """`compute(references, predictions, k)` as code_eval has it, for k=[1] (greedy, one sample):
    returns ({"pass@1": mean over problems of the share of passing candidates}, per-candidate)."""

    def compute(
        self, references: list[str], predictions: list[list[str]], k: list[int] | None = None
    ) -> tuple[dict[str, float], dict[int, list[bool]]]:
        if list(k or [1]) != [1]:
            raise ValueError(f"only pass@1 is supported, got k={k}")
        results: dict[int, list[bool]] = {}
        for i, (test_case, candidates) in enumerate(zip(references, predictions, strict=True)):
            results[i] = [run_candidate(c, test_case) for c in candidates]
        shares = [sum(r) / len(r) for r in results.values() if r]
        return {"pass@1": sum(shares) / len(shares) if shares else 0.0}, results


@contextlib.contextmanager
def guarded_evaluate_load() -> Iterator[None]:
    """Within the block, `evaluate.load("code_eval")` is the sandboxed metric; others refused."""
    import evaluate

    original = evaluate.load

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if path == "code_eval":
            return SandboxCodeEval()
        raise UserError(
            "--lm-eval-task",
            f"the task loads the Hugging Face metric {path!r} (evaluate.load), which downloads "
            "code from the Hub; gemfinder does not run it",
        )

    evaluate.load = load
    try:
        yield
    finally:
        evaluate.load = original
