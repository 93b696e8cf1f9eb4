"""A search result whose model ids, task names and query set name attack the HTML report."""

from __future__ import annotations

from gemfinder.search.values import Estimate, Paired, Result

SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(2)>'
MATH = r"org/$\frac{1}{0}$-model"  # mathtext that would fail to parse
COMMENT = "--><script>alert(3)</script><!--"


def est(model_id, acc, seen, rnd, downloads, rank=0):
    half = 0.5 / seen**0.5
    return Estimate(model_id, rank, acc, max(acc - half, 0), min(acc + half, 1), seen,
                    round(acc * seen), rnd, downloads)  # fmt: skip


def hostile_result() -> Result:
    winner = est(SCRIPT, 0.81, 64, 0, None, 1)  # no downloads: the unknown lane
    popular = est(ATTR, 0.74, 48, 3, 2.5e6, 3)
    ranking = [winner, est(MATH, 0.78, 64, 4, 0.0, 2), popular, est(COMMENT, 0.6, 16, 2, 12.0, 4)]
    ranking += [est(f"org/m{k}", 0.4 + k / 100, 8, 1, float(10 * k), 5 + k) for k in range(20)]
    ranking.append(Estimate("org/never-asked", 30, downloads=5.0))
    return Result(
        recommended_model_id=SCRIPT,
        ranking=tuple(ranking),
        queries_spent=900,
        queries_failed=3,
        queries_cached=40,
        exhaustive_queries=25 * 64,
        winner=winner,
        most_popular=popular,
        hidden_gem=True,
        gem_verdict="hidden_gem",
        gem_evidence=(Paired(ATTR, 48, 9, 1, 0.011),),
        gem_check_queries=0,
    )


SPEC = {
    "items": [{"task": "mmlu"}] * 40 + [{"task": "<b>gsm8k</b>"}] * 24,
    "algorithm": "sh_correlated",
    "budget": 1000,
    "seed": 7,
    "query_set": "<i>mixed</i>",
}


def per_task() -> dict[str, list[Estimate]]:
    return {
        "mmlu": [est(SCRIPT, 0.9, 40, 0, None), est(ATTR, 0.7, 30, 3, 2.5e6)],
        "<b>gsm8k</b>": [est(SCRIPT, 0.7, 24, 0, None), est(MATH, 0.72, 24, 4, 0.0)],
    }
