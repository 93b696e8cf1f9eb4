"""gemfinder's `multi_choice_regex` (lm-eval's filter, its Unicode punctuation table built once per
process: tasks/lmeval/mcregex.py) extracts exactly what lm-eval's unmodified filter extracts: on
the settings of every shipped task YAML that uses the filter plus the other switches, over
hand-written and fuzzed answers and choices (Unicode punctuation, symbols that are not
punctuation, letters, colons, parentheses)."""

from __future__ import annotations

import random
import sys
import unicodedata
from typing import Any

import pytest
import yaml
from gemfinder.tasks.lmeval import grading, mcregex
from gemfinder.tasks.lmeval.patterns import _Loader
from lm_eval.filters.extraction import MultiChoiceRegexFilter

from tests import lm_eval_support as sup


def _shipped_settings() -> list[dict[str, Any]]:
    """The kwargs of every multi_choice_regex step in lm-eval's task YAMLs (deduplicated)."""
    loader, found = _Loader.make(), {}
    for path in sorted(sup.LM_EVAL_TASKS.glob("**/*yaml")):
        text = path.read_text(encoding="utf-8")
        if "multi_choice_regex" not in text:
            continue
        for doc in yaml.load_all(text, Loader=loader):  # noqa: S506 - SafeLoader
            for fl in (doc or {}).get("filter_list") or []:
                for step in fl.get("filter") or []:
                    if step.get("function") == mcregex.NAME:
                        kw = {k: v for k, v in step.items() if k != "function"}
                        found[repr(sorted(kw.items()))] = kw
    return list(found.values())


SHIPPED = _shipped_settings()
GPQA = {  # gpqa's and mmlu flan cot's flexible-extract
    "regex_pattern": r"(\([A-Z]\))",
    "group_select": -1,
    "ignore_case": True,
    "ignore_punctuation": True,
}
OTHER = [
    {},  # lm-eval's defaults: no ignore_case, no ignore_punctuation
    {"regex_pattern": r"(\([A-Z]\))", "ignore_punctuation": True},
    {"regex_pattern": r"(\([A-Z]\))", "ignore_case": True, "regexes_to_ignore": [",", r"\$"]},
    {"regex_pattern": r"answer is \(?([A-J])\)?", "ignore_punctuation": True, "fallback": "?"},
]
PUNCT = "!\"#%&'()*,-./:;?@[\\]_{}¡§«»¿‐–—‘’“”…‰‽⁂、。「」『』【】・！？（），："
NOT_PUNCT = "$+<=>^`|~€£¥©®°±×÷→∑√∞♪😀"  # symbols (category S): kept by ignore_punctuation
CHOICES = [
    ["2", "4", "8", "16"],
    ["Paris!", "London", "Ber-lin", "Rome."],
    ["It's (A) trick", "«Quoted»", "a, b, c", "None of the above"],
    ["Guilty", "Guilty of Romance", "Not guilty", "GUILTY!"],
    ["¿Qué?", "¡Sí!", "No…", "Quizá—tal vez"],
    ["東京。", "大阪、京都", "「札幌」", "福岡"],
    ["$5", "5%", "x + y = z", "→ left"],
    ["ab", "a.b", "a b", "A_B", "a-b"],
    [" padded ", "(B)", "B", ": C"],
]
HAND = [
    "The answer is (B).",
    "(a) or maybe (C)? Final: (D)",
    "I think: B",
    "answer:   C because",
    "Ber-lin, of course",
    "berlin",
    "BERLIN!!!",
    "«quoted»",
    "It’s (A) trick",  # a typographic apostrophe: punctuation too
    "Guilty of romance.",
    "guilty",
    "¿qué? ¡sí!",
    "quizá tal vez",
    "大阪京都",
    "「札幌」です",
    "$5 is the price",
    "x + y = z",
    "ab a.b",
    "A_B",
    ": C",
    "",
    "   ",
    "no letter here",
    "(Z)",
    "\n(A)\n",
]


def _fuzz(rng: random.Random, choices: list[str]) -> str:
    pieces = list(PUNCT + NOT_PUNCT) + [" ", "\n", ":", ": ", "(", ")", "answer is "]
    pieces += [chr(ord("A") + k) for k in range(6)] + [c.lower() for c in "ABCDEF"]
    pieces += (
        choices + [c.upper() for c in choices] + ["".join(rng.sample(c, len(c))) for c in choices]
    )
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))


def _cases(seed: int) -> tuple[list[list[str]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    resps, docs = [], []
    for choices in CHOICES:
        for _ in range(40):  # fuzzed choices: punctuation around and inside the texts
            noisy = [
                rng.choice(PUNCT + NOT_PUNCT + " ") + c + rng.choice(PUNCT + " ") for c in choices
            ]
            rows = [HAND, [_fuzz(rng, noisy) for _ in range(8)]]
            for doc_choices in (choices, noisy):
                for answers in rows:
                    resps.append(list(answers) + [_fuzz(rng, doc_choices) for _ in range(8)])
                    docs.append({"choices": doc_choices})
    return resps, docs


def test_the_shipped_settings_were_found() -> None:
    assert len(SHIPPED) >= 3 and GPQA in SHIPPED, SHIPPED  # gpqa/mmlu flan (-1, 0), acpbench
    assert all(s.get("ignore_punctuation") for s in SHIPPED)


@pytest.mark.parametrize("kwargs", SHIPPED + OTHER, ids=repr)
def test_same_extraction_as_lm_evals_own_filter(kwargs: dict[str, Any]) -> None:
    resps, docs = _cases(seed=len(repr(kwargs)))
    fast = mcregex.filter_class()
    assert fast is not MultiChoiceRegexFilter, "the patch did not apply to this lm-eval"
    # One call each: lm-eval's filter builds its table once per apply call.
    want = MultiChoiceRegexFilter(**kwargs).apply(resps, docs)
    got = fast(**kwargs).apply(resps, docs)
    assert got == want
    assert len({a for row in want for a in row}) > 3  # the cases reach more than one outcome


def test_table_is_lm_evals_and_built_once_per_process() -> None:
    fast = mcregex.filter_class()
    table = fast.apply.__globals__["_gemfinder_punct_tbl"]
    expected = {i for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
    assert set(table()) == expected and all(v is None for v in table().values())
    fields = {
        "doc": {"choices": ["Paris!", "London", "Ber-lin", "Rome."]},
        "prompt": "Capital?",
        "until": ["</s>"],
        "filter": {
            "name": "flexible-extract",
            "steps": [["multi_choice_regex", GPQA], ["take_first", None]],
        },
    }
    before = table.cache_info().misses
    got = [grading.apply_filter(fields, r) for r in ("Ber lin", "berlin!", "London.", ": D") * 25]
    assert got[:4] == ["[invalid]", "(C)", "(B)", "(D)"]
    assert table.cache_info().misses == before <= 1  # built at most once, never per answer


def test_an_apply_of_another_shape_is_left_to_lm_eval() -> None:
    class Reworked(MultiChoiceRegexFilter):
        def apply(self, resps: Any, docs: Any) -> Any:
            punct_tbl = dict.fromkeys(len(self.regex.pattern) for _ in range(3))  # uses self
            return [[str(punct_tbl)] for _ in resps]

    class NoTable(MultiChoiceRegexFilter):
        def apply(self, resps: Any, docs: Any) -> Any:
            return resps

    assert mcregex._patched_apply(Reworked) is None
    assert mcregex._patched_apply(NoTable) is None
