"""Monte Carlo replay of a correctness matrix through the search algorithms (Rust simulator).

Trials run in chunks so that a progress bar can move; every chunk runs in parallel in Rust.
Trial t uses the same item permutation for every algorithm (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gemfinder import _core
from gemfinder.budget import U64_MAX, Budget, too_small
from gemfinder.errors import UserError
from gemfinder.loss import clopper_pearson_upper, cost_to_confidence, loss_figures, trial_losses
from gemfinder.sim.matrix import CorrectnessMatrix

CHUNK = 250
CERTIFIED = "certified"  # the `algorithm` of fixed-confidence rows
TOL = 1e-9  # points: accuracies are ratios of counts


def algorithm_name(name: str) -> str:
    """Resolve `default` and reject unknown names with the list of known ones."""
    resolved = _core.DEFAULT_ALGORITHM if name == "default" else name
    if resolved not in _core.ALGORITHMS:
        known = ", ".join(["default", *_core.ALGORITHMS])
        raise UserError("algorithms", f"unknown algorithm {name!r} (known: {known})")
    return resolved


def parse_algorithm(spec: str) -> tuple[str, dict[str, float]]:
    """`name[:param=value,...]`, e.g. `gem:first_cut=50,first_round_share=0.3`."""
    name, _, rest = spec.partition(":")
    params: dict[str, float] = {}
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        try:
            if not (key and eq):
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise UserError(
                "algorithms", f"{spec!r}: parameters must be key=number pairs, got {pair!r}"
            ) from None
    algorithm_name(name)
    return name, params


def _budget(budget_per_model: float, n_models: int) -> Budget:
    """An average per model (any positive number), the total rounded."""
    return Budget.of_per_model(budget_per_model, n_models, "budget_per_model", whole=False)


def check_seed(seed: int) -> int:
    """Seeds are u64 in the core: 0 to 2**64 - 1."""
    if not 0 <= seed <= U64_MAX:
        raise UserError("seed", f"must be between 0 and {U64_MAX} (2**64 - 1), got {seed}")
    return seed


def check_trials(trials: int) -> int:
    if trials < 1:
        raise UserError("trials", f"must be at least 1, got {trials}")
    if trials > U64_MAX:
        raise UserError("trials", f"must be at most {U64_MAX} (2**64 - 1), got {trials}")
    return trials


def simulate(
    matrix: CorrectnessMatrix,
    algorithm: str,
    budget_per_model: float,
    trials: int,
    seed: int,
    params: dict[str, float] | None = None,
    on_progress: Callable[[int], None] | None = None,
    target: tuple[float, float] | None = None,
) -> dict:
    """Run `trials` trials and return the summary row (keys documented in docs/search.md); with
    a `target` (epsilon, delta) also `p_within_epsilon`, P(loss <= epsilon)."""
    name, budget, popularity = _checked(matrix, algorithm, budget_per_model, trials, seed, params)
    picks, spent = [], []
    for start in range(0, trials, CHUNK):
        stop = min(trials, start + CHUNK)
        p, s = _trials(matrix, name, budget_per_model, seed, start, stop, params, popularity)
        picks.append(p)
        spent.append(s)
        if on_progress is not None:
            on_progress(stop - start)
    picks, spent = np.concatenate(picks), np.concatenate(spent)
    summary = _core.summarize(matrix.accuracies(), picks, spent)
    losses = trial_losses(matrix.accuracies(), picks)
    row = {
        "algorithm": name,
        "requested": algorithm,
        "budget_per_model": budget_per_model,
        "budget": budget,
        **summary,
        **loss_figures(losses),
    }
    if target is not None:
        row["p_within_epsilon"] = float(np.mean(losses <= 100 * target[0] + TOL))
    return row


def check_target(epsilon: float, delta: float) -> None:
    """The service's ranges: epsilon in (0, 1] (a share of accuracy), delta in (0, 0.5]."""
    if not 0 < epsilon <= 1:
        raise UserError("epsilon", f"must be an accuracy gap in (0, 1], got {epsilon:g}")
    if not 0 < delta <= 0.5:
        raise UserError("delta", f"must be a probability in (0, 0.5], got {delta:g}")


def simulate_certified(
    matrix: CorrectnessMatrix,
    budget_per_model: float,
    trials: int,
    seed: int,
    epsilon: float,
    delta: float,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Fixed-confidence trials with at most `budget_per_model` x models queries each: the
    summary keys of `simulate` plus the certificate's (docs/search.md, "--epsilon")."""
    check_trials(trials)
    check_seed(seed)
    check_target(epsilon, delta)
    budget = _budget(budget_per_model, matrix.n_models).total
    picks, spent, reached = [], [], []
    for start in range(0, trials, CHUNK):
        stop = min(trials, start + CHUNK)
        try:
            p, s, r = _core.simulate_certified(
                matrix.correct, budget, seed, start, stop, epsilon, delta
            )
        except _core.SearchError as err:
            raise UserError(_field(err, CERTIFIED), err.reason) from None
        picks.append(p)
        spent.append(s)
        reached.append(r)
        if on_progress is not None:
            on_progress(stop - start)
    picks, spent, reached = (np.concatenate(a) for a in (picks, spent, reached))
    losses = trial_losses(matrix.accuracies(), picks)
    wrong = losses > 100 * epsilon + TOL
    certified = reached <= epsilon
    false_certificates = int(np.sum(wrong & certified))
    beyond = int(np.sum(losses > 100 * reached + TOL))
    return {
        "algorithm": CERTIFIED,
        "requested": CERTIFIED,
        "params": {},
        "budget_per_model": budget_per_model,
        "budget": budget,
        **_core.summarize(matrix.accuracies(), picks, spent),
        **loss_figures(losses),
        "epsilon": epsilon,
        "delta": delta,
        "certified_fraction": float(np.mean(certified)),
        "epsilon_reached_median": float(np.median(reached)),
        "p_within_epsilon": 1 - float(np.mean(wrong)),
        "error_rate": float(np.mean(wrong)),
        "error_rate_upper95": clopper_pearson_upper(int(np.sum(wrong)), trials),
        "false_certificate_upper95": clopper_pearson_upper(false_certificates, trials),
        "certificate_miss_upper95": clopper_pearson_upper(beyond, trials),
        "budget_saved": 1 - float(spent.mean()) / budget if budget else 0.0,
    }


def _saved_at_equal_p(row: dict, fixed: list[dict]) -> float | None:
    """1 - queries spent / queries of the cheapest fixed-budget row with at least the same
    P(loss <= epsilon); None when no fixed-budget row is as good."""
    good = [r["queries_spent"] for r in fixed if r["p_within_epsilon"] >= row["p_within_epsilon"]]
    if not good or min(good) == 0:
        return None
    return 1 - row["queries_spent"] / min(good)


def simulate_grid(
    matrix: CorrectnessMatrix,
    algorithms: Sequence[str],
    budgets_per_model: Sequence[float],
    trials: int,
    seed: int,
    on_progress: Callable[[int], None] | None = None,
    target: tuple[float, float] | None = None,
) -> list[dict]:
    """Every algorithm spec (`name[:param=value,...]`) at every budget, all on the same trials
    (paired comparisons). Every combination is checked before any trial runs, so a bad one
    late in the grid does not throw away the rows before it. Every row also carries its
    algorithm's `cost_to_confidence` over the whole budget grid (gemfinder.loss).

    With a `target` (epsilon, delta) each budget also gets a fixed-confidence row (algorithm
    `certified`, the budget its maximum; `simulate_certified`), and every fixed-budget row its
    `p_within_epsilon`, so the certified rows can say what they save against the cheapest
    fixed-budget row that is as good."""
    specs = [(spec, *parse_algorithm(spec)) for spec in algorithms]
    if target is not None:
        check_target(*target)
    for n_avg in budgets_per_model:
        for _, name, params in specs:
            _checked(matrix, name, n_avg, trials, seed, params or None)
    rows = []
    for n_avg in budgets_per_model:
        for spec, name, params in specs:
            row = simulate(matrix, name, n_avg, trials, seed, params or None, on_progress, target)
            rows.append(row | {"requested": spec, "params": params})
        if target is not None:
            rows.append(simulate_certified(matrix, n_avg, trials, seed, *target, on_progress))
    fixed = [r for r in rows if r["algorithm"] != CERTIFIED]
    for row in rows:
        if row["algorithm"] == CERTIFIED:
            row["budget_saved_at_equal_p"] = _saved_at_equal_p(row, fixed)
    for spec in [*(spec for spec, _, _ in specs), *([CERTIFIED] if target else [])]:
        same = [r for r in rows if r["requested"] == spec]
        budgets = [r["budget_per_model"] for r in same]
        cost = cost_to_confidence(budgets, [r["p_within_half_point"] for r in same])
        for row in same:
            row["cost_to_confidence"] = cost
    return rows


def _checked(
    matrix: CorrectnessMatrix,
    algorithm: str,
    budget_per_model: float,
    trials: int,
    seed: int,
    params: dict[str, float] | None,
) -> tuple[str, int, list[float] | None]:
    """Validate one run without running it: (core name, total budget, popularity)."""
    check_trials(trials)
    check_seed(seed)
    name = algorithm_name(algorithm)
    total = _budget(budget_per_model, matrix.n_models).total
    popularity = None if matrix.downloads is None else matrix.downloads.tolist()
    if name == "best_base" and popularity is None:
        raise UserError("matrix", "best_base needs model downloads (an .npz with 'downloads')")
    # Zero trials: the core checks the budget and parameters and does no work.
    _trials(matrix, name, budget_per_model, seed, 0, 0, params, popularity)
    return name, total, popularity


def _trials(
    matrix: CorrectnessMatrix,
    name: str,
    budget_per_model: float,
    seed: int,
    start: int,
    stop: int,
    params: dict[str, float] | None,
    popularity: list[float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    given = _budget(budget_per_model, matrix.n_models)
    try:
        return _core.simulate_trials(
            matrix.correct, name, given.total, seed, start, stop, params, None, popularity
        )
    except _core.SearchError as err:
        if err.kind == "budget_too_small":  # in the caller's unit: per model; no gem check
            n = matrix.n_models
            raise too_small(
                given.asked, given.total, n, 0, 0.0, name, err.needed, err.why
            ) from None
        raise UserError(_field(err, name), err.reason) from None


def _field(err: _core.SearchError, name: str) -> str:
    field = err.field
    if field.startswith("params."):  # set in --algorithms as name:key=value
        return f"--algorithms {name}:{field.removeprefix('params.')}"
    return "budget_per_model" if field == "budget" else field
