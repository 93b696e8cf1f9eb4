"""Results and progress as typed values (search.values): what existing databases hold still loads,
and converts to the message the server sent before the values were typed.

The files in data/ were written by gemfinder before this change (main at 40072db): a real
search (sh, 6 models, one without downloads, one official, gem check on) stored its result and
progress in a SQLite store; next to them, the messages that code's convert built from them.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from gemfinder import report
from gemfinder.search import gem
from gemfinder.search.values import Estimate, Progress, Result
from gemfinder.server.convert import (
    progress_from_proto,
    progress_to_proto,
    result_from_proto,
    result_to_proto,
)
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb
from google.protobuf import text_format

DATA = Path(__file__).parent / "data"


@pytest.fixture
def stored() -> dict:
    return json.loads((DATA / "stored_result.json").read_text())


def old_message(name: str, msg):
    return text_format.Parse((DATA / name).read_text(), msg)


def test_a_stored_result_loads_and_converts_to_the_same_message(stored):
    result = Result.from_json(stored)
    assert result.gem_verdict == gem.HIDDEN_GEM and result.gem_evidence[0].shared_items == 13
    assert isinstance(result.winner, Estimate) and result.winner == result.ranking[0]
    assert [e.downloads for e in result.ranking].count(None) == 1
    assert result_to_proto(result) == old_message("stored_result.txtpb", pb.SearchResult())
    assert result.to_json() == stored  # stored again, it is the same JSON, key order included
    assert list(result.to_json()) == list(stored)


def test_a_stored_result_loads_from_an_existing_database(tmp_path, stored):
    store = Store(tmp_path / "s.db")
    store.create_search("s", None, {})
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:  # as the code before this change wrote it
        db.execute("UPDATE searches SET result = ?", (json.dumps(stored),))
    db.close()
    store = Store(tmp_path / "s.db")
    try:
        row = store.get_search("s")
        assert row is not None and row.result == Result.from_json(stored)
        store.update_search("s", result=row.result)  # written back unchanged
        assert store.get_search("s").result == row.result
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert json.loads(db.execute("SELECT result FROM searches").fetchone()[0]) == stored
    db.close()


def test_stored_progress_loads_and_converts_to_the_same_message():
    data = json.loads((DATA / "stored_progress.json").read_text())
    progress = Progress.from_json(data["progress"])
    assert progress.to_json() == data["progress"]
    assert progress_to_proto(progress) == text_format.Parse(data["proto"], pb.Progress())
    back = progress_from_proto(progress_to_proto(progress))
    assert back == dataclasses.replace(progress, elapsed_s=back.elapsed_s)
    assert back.elapsed_s == pytest.approx(progress.elapsed_s, abs=1e-9)  # a Duration: ns
    assert progress_to_proto(None) == pb.Progress()  # a search not counted yet


def test_a_received_result_is_the_stored_one_and_reads_the_same(stored):
    result = Result.from_json(stored)
    received = result_from_proto(result_to_proto(result))
    assert received == dataclasses.replace(result, elapsed_s=received.elapsed_s)
    assert received.elapsed_s == pytest.approx(result.elapsed_s, abs=1e-9)
    assert report.ranking_table(received) == report.ranking_table(result)
    assert report.gem_report(received) == report.gem_report(result)
    text = report.gem_report(result)
    assert "is a hidden gem" in text and "org/m2" not in text
    assert report.ranking_table(result).splitlines()[4].endswith(" -")  # org/m2: no downloads


def test_older_results_load_with_the_protos_defaults(stored):
    """Stored before the gem check, its verdict, `official` and finite numbers existed."""
    old = {k: v for k, v in stored.items() if not k.startswith("gem_")}
    old["ranking"] = [{k: v for k, v in e.items() if k != "official"} for e in old["ranking"]]
    old["ranking"][-1]["accuracy"] = float("nan")  # an unseen model, before the rule
    old["winner"] = old["ranking"][0]
    result = Result.from_json(json.loads(json.dumps(old)))
    assert (result.gem_verdict, result.gem_evidence, result.gem_check_queries) == ("", (), 0)
    assert result.ranking[-1].accuracy == 0.0 and not result.winner.official
    msg = result_to_proto(result)
    assert msg.gem_verdict == pb.GEM_VERDICT_UNSPECIFIED and msg.ranking[-1].accuracy == 0.0
    json.dumps(result.to_json(), allow_nan=False)
    assert "no verdict" in report.gem_report(result)
