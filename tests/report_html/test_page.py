"""The HTML page (report_html.page): hostile model ids stay text, nothing is fetched, every
part of the report is there, per-task panels when given; the certificate, the serving cost and
an incremental search's parent only when the result has them."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from gemfinder.cost import Cost, EndpointCost
from gemfinder.report_html.page import build_html
from gemfinder.search.values import Certificate, Incremental, Result

from tests.report_html.hostile import ATTR, MATH, SCRIPT, SPEC, est, hostile_result, per_task


@pytest.fixture(scope="module")
def page() -> str:
    return build_html(hostile_result(), SPEC, search_id="s<1>", per_task=per_task(),
                      task_weights={"mmlu": 2.0})  # fmt: skip


def test_hostile_ids_and_names_are_text(page):
    assert "<script" not in page.lower()  # the page has no script of its own either
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "onerror=" not in page.replace("onerror=alert(2)&gt;", "")
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>gsm8k" not in page and "&lt;b&gt;gsm8k&lt;/b&gt; 24" in page
    assert "<i>mixed" not in page and "s&lt;1&gt;" in page
    assert "--><script" not in page


def test_self_contained_nothing_fetched(page):
    assert page.startswith("<!DOCTYPE html>")
    assert "<link" not in page and "@import" not in page
    # Every reference points inside the page; the only URLs are XML namespaces.
    refs = re.findall(r"(?:href|src)\s*=\s*[\"']([^\"']*)", page)
    assert refs and all(r.startswith("#") for r in refs)
    urls = set(re.findall(r"https?://[^\s\"')<]+", page))
    assert urls == {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_every_part_is_there(page):
    assert page.count("<svg") == 3  # overview, per-task panels, rounds
    assert "A hidden gem" in page and "significantly better than each of them" in page
    assert "only the winner right" in page and "<td>9</td><td>1</td><td>0.011</td>" in page
    assert "900 queries spent (3 failed, 40 answered from the cache)" in page
    assert "1 candidate was never queried (not drawn)" in page
    assert "<h2>Per task</h2>" in page
    assert "derived from each candidate's graded items" in page
    # rounds 1..4 from eliminated_in_round; the never-queried candidate is in none
    assert re.findall(r"<td class=id>round (\d)</td><td>(\d+)</td>", page) == [
        ("1", "24"), ("2", "4"), ("3", "3"), ("4", "2")]  # fmt: skip
    assert "<tr class=winner><td>1</td><td class=id>&lt;script&gt;" in page
    assert "<td>unknown</td>" in page  # the winner's downloads


def test_no_downloads_no_rounds():
    ranking = (est("a/b", 0.7, 30, 0, None, 1), est("c/d", 0.5, 30, 0, None, 2))
    result = Result(
        recommended_model_id="a/b",
        ranking=ranking,
        winner=ranking[0],
        queries_spent=60,
        exhaustive_queries=60,
        gem_verdict="no_popularity",
    )
    page = build_html(result)
    assert "No verdict: no candidate has downloads" in page
    assert "This search has no rounds" in page
    assert page.count("<svg") == 1 and "Most downloaded" not in page


def _with_extras(**kw) -> Result:
    """The hostile result as a fixed-confidence, incremental search on costed endpoints; the
    parent's id and winner are hostile too (a search id is the caller's request id)."""
    extras = dict(
        certificate=Certificate(epsilon_reached=0.0173, delta=0.05, epsilon=0.02, certified=True),
        cost=Cost(1234.56, 400.25, 880, 2, 31, 45, 321.0),
        incremental=Incremental(SCRIPT + "-parent", ATTR, winner_changed=True,
                                incumbents=(ATTR, MATH), newcomers=(SCRIPT,)),
    )  # fmt: skip
    return replace(hostile_result(), **(extras | kw))


def test_measured_query_time_and_the_gpu_second_cap_are_said():
    cost = Cost(
        120.0, 40.0, 500, 1, 12, 30, 120.0,
        endpoints=(EndpointCost("http://a:1", 100.0, 400, 0.2, True, 400),
                   EndpointCost("http://b:1", 20.0, 100, 0.2, False, 0)),
        gpu_seconds_cap=120.5, stopped_by_cap=True,
    )  # fmt: skip
    page = build_html(_with_extras(cost=cost), SPEC)
    assert "query time measured from the responses at 1 of 2 endpoints" in page
    assert "The search stopped on its cap of 120.5 GPU-seconds" in page
    page = build_html(_with_extras(cost=replace(cost, stopped_by_cap=False)), SPEC)
    assert "Its cap of 120.5 GPU-seconds was not reached." in page
    assert "not measured" not in page
    assert "cap" not in build_html(_with_extras(), SPEC).split("Serving cost")[1].split("</p>")[0]


def test_certificate_cost_and_parent_when_present():
    page = build_html(_with_extras(), SPEC)
    verdict = page[page.index('<div class="verdict') : page.index("</div>")]
    assert (
        "<p>Certificate: the winner is within 1.73 accuracy points of every model with "
        "probability at least 0.95 (target 2 points: certified).</p>"
    ) in verdict
    assert (
        "<p>Serving cost: 1,234.6 GPU-seconds (400.2 of them loading: 2 model loads, 31 adapter "
        "loads, 45 slot swaps) for 880 queries sent to endpoints; wall time 321.0 s"
    ) in page
    # next to the queries, not in the verdict
    assert page.index("900 queries spent") < page.index("Serving cost") < page.index("<h2>Ranking")
    assert (
        "Incremental search from <b>&lt;script&gt;alert(1)&lt;/script&gt;-parent</b>: the winner "
        "changed: <b>&quot;&gt;&lt;img src=x onerror=alert(2)&gt;</b> before, "
        "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b> now; 2 incumbents, 1 newcomers."
    ) in verdict
    assert "<script" not in page.lower() and "<img" not in page


def test_a_target_not_reached_and_a_fixed_budget_certificate_say_so():
    missed = Certificate(epsilon_reached=0.031, delta=0.1, epsilon=0.02, certified=False)
    page = build_html(_with_extras(certificate=missed, incremental=None))
    assert "at least 0.9 (target 2 points: not reached within the budget).</p>" in page
    assert "Incremental search" not in page
    fixed = Certificate(epsilon_reached=0.08, delta=0.05)  # a fixed-budget search: no target
    page = build_html(_with_extras(certificate=fixed))
    assert "within 8.00 accuracy points of every model with probability at least 0.95.</p>" in (
        page)  # fmt: skip
    assert "target" not in page and "nothing useful" not in page
    wide = Certificate(epsilon_reached=0.9924, delta=0.05)  # SH dropped models after a few items
    page = build_html(_with_extras(certificate=wide))
    assert (
        "<p>Certificate: the winner is within 99.24 accuracy points of every model with "
        "probability at least 0.95, which certifies nothing useful (this budget compared some "
        "models on a few items only); for a guarantee, search with --epsilon (and --delta).</p>"
    ) in page
    same = Incremental("parent-1", SCRIPT, winner_changed=False, incumbents=(SCRIPT,))
    page = build_html(_with_extras(incremental=same))
    assert "the winner is unchanged (<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>)" in page


def test_no_certificate_cost_or_parent_when_absent(page):
    assert "Certificate" not in page and "certificate" not in page
    assert "Serving cost" not in page and "GPU-seconds" not in page
    assert "Incremental search" not in page
