"""Importing gemfinder turns huggingface_hub's telemetry off (no call to huggingface.co when a
client builds its headers) unless the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import gemfinder
from huggingface_hub import constants
from huggingface_hub.utils import _detect_agent, build_hf_headers
fetched = []
_detect_agent._fetch_registry = lambda: fetched.append(1)
_detect_agent._read_cached_registry = lambda path, max_age: None
build_hf_headers(library_name="gemfinder", library_version=gemfinder.__version__)
print(constants.HF_HUB_DISABLE_TELEMETRY, len(fetched))
"""


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_TELEMETRY"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_telemetry_is_off_by_default_and_no_registry_is_fetched():
    assert probe() == "True 0"


def test_the_users_choice_wins():
    # With telemetry on, building headers asks the Hub for the agent registry: what we avoid.
    assert probe(HF_HUB_DISABLE_TELEMETRY="0") == "False 1"
