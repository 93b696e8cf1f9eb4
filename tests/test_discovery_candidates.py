"""gemfinder.discovery.candidates: who is served where, who is skipped and why."""

from __future__ import annotations

import re

import pytest
from gemfinder.candidates import load_candidates
from gemfinder.discovery.candidates import (
    SKIP_ADAPTER_OF_ADAPTER,
    SKIP_FEW_DOWNLOADS,
    SKIP_GGUF,
    SKIP_NESTED_ADAPTER,
    Serving,
    dns_label,
    to_candidates,
    write_candidates,
)
from gemfinder.discovery.walk import Discovery, FoundModel
from gemfinder.errors import UserError

BASE = "org/Base-8B-Instruct"


def tree() -> Discovery:
    found = Discovery(BASE, "http://hub", ("finetune", "adapter", "merge", "quantized"), 3)
    found.models = [
        FoundModel(BASE, None, None, 0, 5000, True),
        FoundModel("a/ft", BASE, "finetune", 1, 300, False),
        FoundModel("b/lora", BASE, "adapter", 1, 200, False),
        FoundModel("org/guard", BASE, "finetune", 1, 100, True),
        FoundModel("c/awq", BASE, "quantized", 1, 90, False),
        FoundModel("d/gguf", BASE, "quantized", 1, 80, False, ("gguf", "llama.cpp")),
        FoundModel("e/ft-lora", "a/ft", "adapter", 2, 70, False),
        FoundModel("f/merge", "a/ft", "merge", 2, 3, False),
        FoundModel("g/lora-lora", "b/lora", "adapter", 2, 60, False),
    ]
    return found


def by_id(mapped):
    return {c.model_id: c for c in mapped.candidates}


def test_full_models_get_their_own_endpoint_and_base_adapters_the_adapter_endpoint():
    serving = Serving("http://tgi-{slug}.svc:8080", adapter_endpoint="http://lora.svc")
    mapped = to_candidates(tree(), serving)
    got = by_id(mapped)
    assert list(got) == [BASE, "a/ft", "b/lora", "org/guard", "c/awq", "f/merge"]
    assert got[BASE].endpoint == "http://tgi-org--Base-8B-Instruct.svc:8080"
    assert got["a/ft"].endpoint == "http://tgi-a--ft.svc:8080" and got["a/ft"].adapter_id is None
    assert (got["b/lora"].endpoint, got["b/lora"].adapter_id) == ("http://lora.svc", "b/lora")
    assert got[BASE].official and got["org/guard"].official and not got["a/ft"].official
    assert got["a/ft"].downloads == 300.0 and got["a/ft"].backend == "tgi"
    assert {m.model_id: why for m, why in mapped.skipped} == {
        "d/gguf": SKIP_GGUF,
        "e/ft-lora": SKIP_NESTED_ADAPTER,
        "g/lora-lora": SKIP_ADAPTER_OF_ADAPTER,
    }


def test_adapters_default_to_the_bases_endpoint_and_nested_ones_can_be_kept():
    serving = Serving("http://gw:8080/{model_id}", backend="openai", nested_adapters=True)
    got = by_id(to_candidates(tree(), serving))
    assert got["b/lora"].endpoint == f"http://gw:8080/{BASE}"
    assert (got["e/ft-lora"].endpoint, got["e/ft-lora"].adapter_id) == (
        "http://gw:8080/a/ft",
        "e/ft-lora",
    )
    assert "g/lora-lora" not in got and got[BASE].backend == "openai"


def test_min_downloads_keeps_the_base():
    found = tree()
    found.models[0] = FoundModel(BASE, None, None, 0, 1, True)
    mapped = to_candidates(found, Serving("http://x", min_downloads=100))
    assert list(by_id(mapped)) == [BASE, "a/ft", "b/lora", "org/guard"]
    assert sum(why == SKIP_FEW_DOWNLOADS for _, why in mapped.skipped) == 2


@pytest.mark.parametrize(
    "template, words",
    [("http://x/{name}", "unknown placeholder {name}"), ("tgi-{slug}:80", "not an http"),
     ("http://x/{slug", "bad template")],
)  # fmt: skip
def test_bad_templates(template, words):
    with pytest.raises(UserError) as err:
        to_candidates(tree(), Serving(template))
    assert err.value.field == "endpoint" and words in err.value.reason


def test_written_file_loads_with_the_projects_loader_and_is_never_clobbered(tmp_path):
    mapped = to_candidates(tree(), Serving("http://tgi-{slug}:8080"))
    out = tmp_path / "c.jsonl"
    write_candidates(mapped.candidates, out)
    assert load_candidates(out) == mapped.candidates
    before = out.read_bytes()
    with pytest.raises(UserError) as err:
        write_candidates(mapped.candidates[:2], out)
    assert err.value.field == "--out" and out.read_bytes() == before
    write_candidates(mapped.candidates[:2], out, force=True)
    assert load_candidates(out) == mapped.candidates[:2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.jsonl"]


def test_dns_placeholder_gives_distinct_valid_labels():
    ids = ["meta-llama/Llama-3.1-8B-Instruct", "a-b/c", "a/b-c", "org/" + "x" * 100]
    labels = [dns_label(i) for i in ids]
    assert len(set(labels)) == len(ids)
    for label in labels:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", label) and len(label) <= 50
    assert labels[0].startswith("meta-llama-llama-3-1-8b-instruct-")
    assert dns_label(ids[0]) == labels[0]  # stable: the same id always gives the same name
    mapped = to_candidates(tree(), Serving("http://tgi-{dns}.fleet.svc:8080"))
    assert by_id(mapped)["a/ft"].endpoint == f"http://tgi-{dns_label('a/ft')}.fleet.svc:8080"


def test_host_labels_over_63_characters_are_refused():
    found = tree()
    found.models.append(FoundModel("h/" + "y" * 70, BASE, "finetune", 1, 5, False))
    assert to_candidates(found, Serving("http://gw/{slug}")).candidates[-1].model_id[:3] == "h/y"
    with pytest.raises(UserError) as err:
        to_candidates(found, Serving("http://tgi-{slug}.svc:8080"))
    assert err.value.field == "endpoint" and "longer than 63" in err.value.reason
