"""Types of the native module built from core_rs/ (checked by mypy.stubtest in CI)."""

from typing import Protocol, final, type_check_only

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "DEFAULT_ALGORITHM",
    "ALGORITHMS",
    "SearchError",
    "Scheduler",
    "CertifiedScheduler",
    "RankedModel",
    "incremental_budget",
    "min_budget",
    "simulate_certified",
    "simulate_incremental",
    "simulate_trials",
    "summarize",
    "wilson_interval",
]

__version__: str
DEFAULT_ALGORITHM: str
ALGORITHMS: list[str]

class SearchError(ValueError):
    """A request the core rejects. `kind` is a stable rule name, `field` the field at fault,
    `reason` the message without its "field: " prefix."""

    kind: str
    field: str
    reason: str
    # Only when kind == "budget_too_small": the smallest budget the core accepts and why.
    needed: int
    why: str

@final
class RankedModel:
    @property
    def model(self) -> int: ...
    @property
    def rank(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def seen(self) -> int: ...
    @property
    def mean(self) -> float: ...
    @property
    def lower(self) -> float: ...
    @property
    def upper(self) -> float: ...
    @property
    def eliminated_in_round(self) -> int | None: ...

@type_check_only
class _AskTell(Protocol):
    """The ask/tell surface both schedulers share (search.runner drives either one; the store
    keeps either's snapshot). Stub only: stubtest checks each class's runtime methods against
    it, and tests/core/test_scheduler_bindings.py that each has all of it."""

    def ask(self, max_pulls: int | None = None) -> list[tuple[int, int]]: ...
    def tell(self, model: int, item: int, correct: bool) -> None: ...
    def tell_failed(self, model: int, item: int) -> None: ...
    def tell_many(self, answers: list[tuple[int, int, bool | None]]) -> list[tuple[int, int]]: ...
    def release_in_flight(self) -> int: ...
    def in_flight_pulls(self) -> list[tuple[int, int]]: ...
    def snapshot(self) -> bytes: ...
    @property
    def finished(self) -> bool: ...
    @property
    def spent(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def budget(self) -> int: ...
    @property
    def round_based(self) -> bool: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def n_models(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def round(self) -> tuple[int, int] | None: ...
    @property
    def recommendation(self) -> int | None: ...
    def survivors(self) -> list[int]: ...
    def ranking(self) -> list[RankedModel]: ...

@final
class Scheduler(_AskTell):
    def __new__(
        cls,
        algorithm: str,
        n_models: int,
        n_items: int,
        budget: int,
        seed: int,
        params: dict[str, float] | None = None,
        priors: list[tuple[float, float]] | None = None,
        popularity: list[float] | None = None,
        trial: int = 0,
    ) -> Scheduler: ...
    @staticmethod
    def restore(data: bytes) -> Scheduler: ...
    def set_load_groups(self, groups: list[int]) -> None: ...
    @property
    def load_aware_round(self) -> bool: ...
    def certificate(self, delta: float, grades: dict[tuple[int, int], bool]) -> float | None: ...

@final
class CertifiedScheduler(_AskTell):
    """Fixed-confidence search (core_rs/src/certified.rs): the surface of Scheduler, plus the
    certificate."""

    def __new__(
        cls,
        n_models: int,
        n_items: int,
        budget: int,
        seed: int,
        epsilon: float,
        delta: float,
        max_attempts: float = 3.0,
    ) -> CertifiedScheduler: ...
    @staticmethod
    def restore(data: bytes) -> CertifiedScheduler: ...
    @property
    def stretches(self) -> int: ...
    @property
    def epsilon_reached(self) -> float: ...
    @property
    def leader(self) -> int: ...
    @property
    def epsilon(self) -> float: ...
    @property
    def delta(self) -> float: ...

def min_budget(
    algorithm: str, n_models: int, n_items: int, params: dict[str, float] | None = None
) -> int: ...
def wilson_interval(successes: int, n: int) -> tuple[float, float]: ...
def simulate_trials(
    correct: npt.NDArray[np.uint8],
    algorithm: str,
    budget: int,
    seed: int,
    start: int,
    stop: int,
    params: dict[str, float] | None = None,
    priors: list[tuple[float, float]] | None = None,
    popularity: list[float] | None = None,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]: ...
def simulate_certified(
    correct: npt.NDArray[np.uint8],
    budget: int,
    seed: int,
    start: int,
    stop: int,
    epsilon: float,
    delta: float,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64], npt.NDArray[np.float64]]: ...
def incremental_budget(
    algorithm: str,
    pool: int,
    n_items: int,
    asked: int,
    depth: int,
    params: dict[str, float] | None = None,
) -> int: ...
def simulate_incremental(
    correct: npt.NDArray[np.uint8],
    algorithm: str,
    seed: int,
    start: int,
    stop: int,
    n_new: int,
    incumbents: int,
    parent_budget: int,
    per_newcomer: int,
    full_budget: int,
    params: dict[str, float] | None = None,
    warm: bool = False,
) -> dict[str, npt.NDArray[np.uint32] | npt.NDArray[np.uint64]]: ...
def summarize(
    accuracies: npt.NDArray[np.float64],
    picks: npt.NDArray[np.uint32],
    spent: npt.NDArray[np.uint64],
) -> dict[str, float | int | tuple[float, float]]: ...
