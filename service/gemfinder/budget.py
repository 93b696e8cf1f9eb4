"""A search's budget, and its errors in the caller's own terms.

`Budget` is the one value every caller builds (the service from `spec.budget`, the CLI from
`--budget`/`--budget-per-model`, the demo from `--per-model`, the simulator from
`budget_per_model`): the conversion from per model to a total, the default, the per-model check
and the split between the search and the gem check happen here and nowhere else.

The core only sees the search's share of the budget (after the gem check keeps its reserve)
and counts it in queries; a caller gave a total or a number per model. These errors restate the
number the caller sent, show what the gem check keeps back, and say what to raise it to, in the
field or flag the caller used (`--budget-per-model`, `spec.budget.per_model`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gemfinder.errors import UserError

DEFAULT_PER_MODEL = 50  # queries per model when the caller sets no budget (CLI, demo, server)
U64_MAX = 2**64 - 1  # the core counts queries in u64


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


@dataclass(frozen=True)
class Budget:
    """A budget in queries for the whole search (`total`) and how the caller gave it (`asked`:
    the number sent and the field that carried it, for errors)."""

    total: int
    asked: BudgetAsked

    @classmethod
    def of_total(cls, total: int, field: str, share_field: str | None = None) -> Budget:
        """A total as sent; its range is checked with the rest of the spec (`check_range`)."""
        return cls(total, BudgetAsked(field, share_field=share_field))

    @classmethod
    def of_per_model(
        cls,
        per_model: float | None,
        n_models: int,
        field: str,
        share_field: str | None = None,
        default: int = DEFAULT_PER_MODEL,
        default_field: str | None = None,
        whole: bool = True,
    ) -> Budget:
        """`per_model` queries for each of `n_models`; None: `default` per model, said as the
        default budget filed under `default_field` when given (`spec.budget`), else as if sent
        in `field` (a flag whose help names the default). `whole`: a whole number of at least 1
        (requests, flags); else any positive number, the total rounded (the simulator's
        average per model)."""
        if per_model is None:
            if default_field is not None:
                asked = BudgetAsked(default_field, default, share_field, default=True)
                return cls(default * n_models, asked)
            per_model = default
        asked = BudgetAsked(field, per_model, share_field)
        if whole:  # a total above the cap is said in the caller's unit by check_range
            if per_model < 1:
                raise UserError(field, f"must be at least 1, got {per_model}")
            return cls(int(per_model) * n_models, asked)
        if not per_model > 0:
            raise UserError(field, f"must be positive, got {per_model}")
        if not math.isfinite(per_model) or per_model * n_models > U64_MAX:
            raise UserError(field, f"too large, got {per_model}")
        return cls(int(round(per_model * n_models)), asked)

    def check_range(self, n_models: int, max_budget: int) -> None:
        """At least 1 query and at most the server's cap."""
        if self.total < 1 or self.total > max_budget:
            raise out_of_range(self.asked, self.total, n_models, max_budget)


def gem_check_reserve(total: int, share: float) -> int:
    """Queries of `total` kept back for the gem check (`share` 0 when it does not run); the
    rest is the search's."""
    return int(share * total)


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _smallest_total(needed: int, share: float) -> int:
    """The smallest total whose search share (total minus the reserve) reaches `needed`."""
    total = math.ceil(needed / (1.0 - share)) if share < 1.0 else needed
    while total - gem_check_reserve(total, share) < needed:
        total += 1
    while total > needed and (total - 1) - gem_check_reserve(total - 1, share) >= needed:
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
