"""The HTML report as a person sees it: rendered by headless Chromium (Debian's `chromium`),
the screenshot must show the figures (not a blank page) and the page's text, as the browser
parsed it, must hold the winner's label, with hostile model ids as text and no script.

Skips, saying so, without chromium, unless GEMFINDER_REQUIRE_CHROMIUM=1 (.ci/run sets it;
scripts/install.sh installs the package)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np
import pytest
from gemfinder.report_html.page import build_html
from PIL import Image

from tests.report_html.hostile import SCRIPT, SPEC, hostile_result, per_task

WIDTH, HEIGHT = 1200, 1600
RED = np.array([214, 39, 40])  # figures.WINNER, the winner's star and label


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "chromium not installed (Debian package `chromium`; scripts/install.sh installs it)"
REQUIRED = os.environ.get("GEMFINDER_REQUIRE_CHROMIUM") == "1"
if CHROMIUM is None and not REQUIRED:
    pytest.skip(MISSING, allow_module_level=True)  # one line for the whole module


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        pytest.fail(MISSING + " (required: GEMFINDER_REQUIRE_CHROMIUM=1)")
    return CHROMIUM


def browse(chromium: str, tmp_path, *args: str) -> bytes:
    """Run headless Chromium on the page in tmp_path; its stdout."""
    argv = [chromium, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", *args,
            (tmp_path / "report.html").as_uri()]  # fmt: skip
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    done = subprocess.run(argv, capture_output=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def rendered(chromium, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chromium")
    page = build_html(hostile_result(), SPEC, search_id="s1", per_task=per_task())
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    shot = tmp_path / "shot.png"
    browse(chromium, tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}")
    dom = browse(chromium, tmp_path, "--dump-dom").decode()
    return np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")), dom


def test_the_screenshot_shows_the_figures(rendered):
    pixels, _ = rendered
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    gray = pixels.mean(axis=2)
    assert gray.std() > 20, "the page rendered (nearly) blank"
    assert (gray < 200).mean() > 0.03  # text, axes, points: not a few stray pixels
    # The winner's red star and label: the overview figure was drawn, not only the text.
    assert (np.abs(pixels.astype(int) - RED).max(axis=2) < 40).sum() > 100


def test_the_dom_holds_the_winners_label_as_text(rendered):
    _, dom = rendered
    assert "<script" not in dom.lower() and "<img" not in dom.lower()  # nothing became markup
    escaped = SCRIPT.replace("<", "&lt;").replace(">", "&gt;")
    assert f"Winner: <b>{escaped}</b>" in dom  # the winner's id, as text
    assert "A hidden gem" in dom
    assert dom.count("<svg") == 3
