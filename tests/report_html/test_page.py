"""The HTML page (report_html.page): hostile model ids stay text, nothing is fetched, every
part of the report is there, per-task panels when given."""

from __future__ import annotations

import re

import pytest
from gemfinder.report_html.page import build_html
from gemfinder.search.values import Result

from tests.report_html.hostile import SPEC, est, hostile_result, per_task


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
