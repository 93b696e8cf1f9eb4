"""Budget errors in the caller's own terms.

The core only sees the search's share of the budget (after the gem check keeps its reserve)
and counts it in queries; a caller gave a total or a number per model. These errors restate the
number the caller sent, show what the gem check keeps back, and say what to raise it to, in the
field or flag the caller used (`--budget-per-model`, `spec.budget.per_model`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gemfinder.errors import UserError


@dataclass(frozen=True)
class BudgetAsked:
    """How the caller gave the budget."""

    field: str  # the flag or field path that carries it; errors are filed under it
    per_model: float | None = None  # the number sent, when it was per model (None: a total)
    share_field: str | None = None  # where the caller sets the gem check's share, if anywhere
    default: bool = False  # the caller sent nothing; `per_model` is the default

    def stated(self, total: int, n_models: int) -> str:
        """`budget 2 per model (20 queries for 10 models` or `budget 20`: the number sent
        first; the parenthesis is left open for details."""
        word = "default budget" if self.default else "budget"
        if self.per_model is None:
            return f"{word} {total:,}"
        return f"{word} {_num(self.per_model)} per model ({total:,} queries for {n_models:,} models"

    def in_unit(self, total: int, n_models: int, up: bool = True) -> str:
        """`total` queries in the caller's unit: per model (rounded up, or down), or the total."""
        if self.per_model is None:
            return f"{total:,}"
        return f"{(math.ceil(total / n_models) if up else total // n_models):,}"


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _smallest_total(needed: int, share: float) -> int:
    """The smallest total whose search share (total - int(share * total)) reaches `needed`."""
    total = math.ceil(needed / (1.0 - share)) if share < 1.0 else needed
    while total - int(share * total) < needed:
        total += 1
    while total > needed and (total - 1) - int(share * (total - 1)) >= needed:
        total -= 1
    return total


def too_small(
    asked: BudgetAsked,
    total: int,
    n_models: int,
    reserve: int,
    share: float,
    algorithm: str,
    needed: int,
    why: str,
) -> UserError:
    """The search's share of `total` is below the `needed` queries the core asks for; the gem
    check keeps back `reserve` of it (`share` of any total; 0 when it does not run)."""
    head = asked.stated(total, n_models)
    if reserve:
        kept = f"the gem check keeps back {reserve:,}, leaving {total - reserve:,} for the search"
        head += f"; {kept})" if asked.per_model is not None else f" ({kept})"
    elif asked.per_model is not None:
        head += ")"
    enough = _smallest_total(needed, share)
    if asked.per_model is not None:
        # Per model, the total is per_model x models: round the smallest total up to a multiple.
        enough = max(enough, math.ceil(enough / n_models) * n_models)
    fix = f"raise {_hint_field(asked)} to {asked.in_unit(enough, n_models)}"
    if not reserve and int(share * enough):  # too small to keep anything back yet
        fix += f" (the gem check keeps back {share:.0%} of it)"
    if reserve and total >= needed and asked.share_field:
        fix += f" or set {asked.share_field} 0"
    return UserError(
        asked.field,
        f"{head} is below the {needed:,} queries that {algorithm} needs to search "
        f"{n_models:,} models ({why}): {fix}",
    )


def out_of_range(asked: BudgetAsked, total: int, n_models: int, max_budget: int) -> UserError:
    """The total is below 1 or above the server's cap."""
    head = asked.stated(total, n_models) + (")" if asked.per_model is not None else "")
    if total < 1:
        return UserError(asked.field, f"{head} must be at least 1")
    return UserError(
        asked.field,
        f"{head} is above the limit of {max_budget:,} queries: lower {_hint_field(asked)} to "
        f"at most {asked.in_unit(max_budget, n_models, up=False)}",
    )


def _hint_field(asked: BudgetAsked) -> str:
    # A default budget is filed under the message's `spec.budget`, but the fix is to set one.
    return f"{asked.field}.per_model" if asked.default else asked.field
