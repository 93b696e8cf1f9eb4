"""The lock files (scripts/lock.sh): the image's runtime lock is the tested set, lm-eval included.

requirements/runtime.txt is what the Docker image installs, requirements/dev.txt what the tests
run on; a package pinned in both at different versions or hashes would ship code no test ran.
"""

from __future__ import annotations

import re
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"
# `name==version ; marker \` then `--hash=...` lines, until the next requirement.
_ENTRY = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ; ([^\\\n]+))?", re.MULTILINE)


def _pins(name: str) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    """(package, marker) -> (version, hashes) of one lock file."""
    text = (REQUIREMENTS / name).read_text(encoding="utf-8")
    pins = {}
    matches = list(_ENTRY.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        block = text[match.end() : following.start() if following else len(text)]
        hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
        assert hashes, f"{name}: {match.group(1)} has no hash"
        key = (match.group(1).lower(), (match.group(3) or "").strip())
        pins[key] = (match.group(2), hashes)
    return pins


def test_every_runtime_pin_is_the_one_the_tests_run():
    runtime, dev = _pins("runtime.txt"), _pins("dev.txt")
    assert len(runtime) > 40, "parser found too few pins"
    moved = {k: (v[0], dev.get(k, ("missing",))[0]) for k, v in runtime.items() if dev.get(k) != v}
    assert not moved, f"runtime.txt and dev.txt disagree (run `make lock`): {moved}"


def test_the_image_gets_lm_eval_without_torch():
    names = {package for package, _ in _pins("runtime.txt")}
    assert "lm-eval" in names, "the runtime lock lacks the lm-eval extra (scripts/lock.sh)"
    assert not names & {"torch", "transformers", "accelerate"}, "lm-eval's core needs no torch"
