"""gemfinder.discovery.walk: the real HfApi client walking the Hub stand-in over real sockets."""

from __future__ import annotations

import socket
import time
from collections import Counter

import pytest
from gemfinder.discovery.walk import DEFAULT_RELATIONS, discover, resolve_hub
from gemfinder.errors import UserError
from gemfinder.sim.fleet.hub import HubModel, models_from_synthetic
from gemfinder.sim.trees import generate
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_session

from tests.hub_support import PlainServer, expected_tree, found_tree, running, running_hub

PRETRAINED, INSTRUCT = 0, 1


@pytest.fixture(scope="module")
def tree():
    return generate("mistral-7b", 2, models=150, items=50)


@pytest.fixture(scope="module")
def hub(tree):
    with running_hub(models_from_synthetic(tree)) as hub:
        yield hub


def api(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


@pytest.mark.parametrize("root, depth", [(PRETRAINED, 3), (INSTRUCT, 2), (PRETRAINED, 1)])
def test_walk_is_the_generators_tree_down_to_max_depth(tree, hub, root, depth):
    base = tree.matrix.models[root]
    found = discover(base, api=api(hub), max_depth=depth)
    want = expected_tree(tree, root, DEFAULT_RELATIONS, depth)
    assert found_tree(found) == want
    assert found.models[0].model_id == base and found.models[0].depth == 0
    assert [m.depth for m in found.models] == sorted(m.depth for m in found.models)
    downloads = dict(zip(tree.matrix.models, tree.matrix.downloads.tolist(), strict=True))
    assert all(m.downloads == downloads[m.model_id] for m in found.models)
    org = base.split("/")[0] + "/"
    assert {m.model_id for m in found.models if m.official} == {
        m for m in want if m.startswith(org)
    }
    assert found.note is None and found.reached_again == 0


def test_deep_enough_walk_finds_every_model(tree, hub):
    found = discover(tree.matrix.models[PRETRAINED], api=api(hub), max_depth=10)
    assert len(found.models) == tree.matrix.n_models


def test_pagination_follows_link_headers(tree):
    base = tree.matrix.models[INSTRUCT]
    with running_hub(models_from_synthetic(tree), page_size=7) as hub:
        found = discover(base, api=api(hub), max_depth=2)
        pages = hub.state.pages["list"]
    assert found_tree(found) == expected_tree(tree, INSTRUCT, DEFAULT_RELATIONS, 2)
    listed = Counter((m.parent, m.relation) for m in found.models if m.depth > 0)
    assert max(listed.values()) > 3 * 7
    assert pages == sum(-(-n // 7) - 1 for n in listed.values())  # every page after the first


def test_relations_filter(tree, hub):
    base = tree.matrix.models[PRETRAINED]
    found = discover(base, api=api(hub), relations=["finetune"], max_depth=3)
    assert found_tree(found) == expected_tree(tree, PRETRAINED, ("finetune",), 3)
    assert {m.relation for m in found.models} == {None, "finetune"}
    adapters = discover(base, api=api(hub), relations=["adapter"], max_depth=3)
    assert found_tree(adapters) == expected_tree(tree, PRETRAINED, ("adapter",), 3)


def test_max_models_cuts_the_walk_with_a_note(tree, hub):
    base = tree.matrix.models[PRETRAINED]
    steps = []
    found = discover(base, api=api(hub), max_models=10, progress=steps.append)
    full = discover(base, api=api(hub))
    assert [m.model_id for m in found.models] == [m.model_id for m in full.models[:10]]
    assert found.truncated and "--max-models 10" in found.note and "depth 1" in found.note
    assert steps[-1].done and steps[-1].total == 10


def test_merges_are_kept_once_and_quantized_left_out_by_default():
    models = [
        HubModel("org/base", 1000),
        HubModel("a/ft", 50, (("finetune", "org/base"),)),
        HubModel("b/ft", 40, (("finetune", "org/base"),)),
        HubModel("c/merge", 30, (("merge", "a/ft"), ("merge", "b/ft"))),
        HubModel("d/awq", 20, (("quantized", "org/base"),)),
        HubModel("e/gguf", 10, (("quantized", "c/merge"),), ("gguf",)),
        HubModel("org/ft", 5, (("finetune", "d/awq"),)),
    ]
    with running_hub(models) as hub:
        found = discover("org/base", api=api(hub))
        everything = discover("org/base", api=api(hub), relations=[*DEFAULT_RELATIONS, "quantized"])
    assert found_tree(found) == {
        "org/base": (None, None, 0),
        "a/ft": ("org/base", "finetune", 1),
        "b/ft": ("org/base", "finetune", 1),
        "c/merge": ("a/ft", "merge", 2),  # the first parent listed (most downloaded first)
    }
    assert found.reached_again == 1
    assert found_tree(everything)["e/gguf"] == ("c/merge", "quantized", 3)
    assert found_tree(everything)["org/ft"] == ("d/awq", "finetune", 2)
    assert {m.model_id for m in everything.models if m.official} == {"org/base", "org/ft"}


def test_unknown_base_model(hub):
    with pytest.raises(UserError) as err:
        discover("nobody/no-such-model", api=api(hub))
    assert err.value.field == "base_model" and "nobody/no-such-model" in err.value.reason
    with pytest.raises(UserError) as err:
        discover("not/a/repo/id", api=api(hub))
    assert err.value.field == "base_model"


def test_hub_unreachable_is_a_user_error():
    with socket.socket() as sock:  # bound, never listening: connection refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(UserError) as err:
            discover("org/base", hub_endpoint=url)
    assert err.value.field == "hub_endpoint" and url in err.value.reason
    assert "refused" in err.value.reason.lower()


def test_a_hub_that_never_answers_times_out():
    # Listening (the connection is accepted by the kernel) but never answering: without a
    # timeout huggingface_hub's client would wait for ever.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        hooks = list(get_session().event_hooks["request"])
        started = time.monotonic()
        with pytest.raises(UserError) as err:
            discover("org/base", hub_endpoint=url, timeout_s=0.3)
    assert err.value.field == "hub_endpoint" and "no answer within 0.3 s" in err.value.reason
    assert time.monotonic() - started < 10
    assert get_session().event_hooks["request"] == hooks  # the bound is lifted afterwards


def test_not_a_hub_is_a_user_error():
    with running(PlainServer()) as server:
        with pytest.raises(UserError) as err:
            discover("org/base", hub_endpoint=server.url)
    assert err.value.field == "hub_endpoint" and "model API" in err.value.reason


def test_rate_limits(tree):
    base = tree.matrix.models[INSTRUCT]
    with running_hub(models_from_synthetic(tree)) as hub:
        hub.state.script[:] = [429]  # model_info: huggingface_hub does not retry it
        with pytest.raises(UserError) as err:
            discover(base, api=api(hub), max_depth=1)
        assert err.value.field == "hub_endpoint" and "429" in err.value.reason
        hub.state.script[:] = [None, 429]  # a listing: retried (Retry-After 0, ~1 s)
        found = discover(base, api=api(hub), max_depth=1)
        assert found_tree(found) == expected_tree(tree, INSTRUCT, DEFAULT_RELATIONS, 1)
        assert hub.state.requests["list"] == found.listings + 1


def test_stand_in_refuses_expand_values_the_real_list_endpoint_refuses(hub):
    with pytest.raises(HfHubHTTPError) as err:
        list(api(hub).list_models(filter="x", expand=["downloads", "childrenModelCount"]))
    assert err.value.response.status_code == 400
    info = api(hub).model_info("mistralai/Mistral-7B-v0.1", expand=["childrenModelCount"])
    assert info.children_model_count > 0


def test_tokens_go_only_where_they_belong(monkeypatch, tree, hub):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert resolve_hub(None, None) == ("https://huggingface.co", None)
    assert resolve_hub("http://127.0.0.1:9/", None) == ("http://127.0.0.1:9", False)
    assert resolve_hub("http://127.0.0.1:9", "tok") == ("http://127.0.0.1:9", "tok")
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local")
    assert resolve_hub(None, None) == ("http://mirror.local", None)
    with pytest.raises(UserError) as err:
        resolve_hub("ftp://x", None)
    assert err.value.field == "hub_endpoint"
    # Over the wire: a saved or environment token never reaches another hub.
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.state.authorization.clear()
    base = tree.matrix.models[INSTRUCT]
    discover(base, hub_endpoint=hub.url, max_depth=1)
    discover(base, hub_endpoint=hub.url, token="hf_given", max_depth=1)
    assert set(hub.state.authorization) == {"", "Bearer hf_given"}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"relations": ["finetune", "sibling"]}, "relations"),
        ({"max_depth": 0}, "max_depth"),
        ({"max_models": 0}, "max_models"),
    ],
)
def test_bad_arguments(hub, kwargs, field):
    with pytest.raises(UserError) as err:
        discover("org/base", api=api(hub), **kwargs)
    assert err.value.field == field
