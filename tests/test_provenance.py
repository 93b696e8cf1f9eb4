"""Provenance without a checkout, as in the service image: the lock's hash from the directory
GEMFINDER_LOCKS_DIR names, the commit from GEMFINDER_GIT_COMMIT, and the Dockerfile providing
both (built images are not tested here: that needs a Docker daemon)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from gemfinder import provenance

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_checkout(tmp_path, monkeypatch):
    """gemfinder as an installed wheel sees it: no repository around the package."""
    monkeypatch.setattr(provenance, "ROOT", tmp_path / "site-packages")
    monkeypatch.delenv(provenance.LOCKS_DIR, raising=False)
    monkeypatch.delenv("GEMFINDER_GIT_COMMIT", raising=False)
    provenance.environment.cache_clear()
    yield tmp_path
    provenance.environment.cache_clear()


def test_without_checkout_or_image_settings_the_locks_and_commit_are_null(no_checkout):
    env = provenance.environment()
    assert env["requirements_lock_sha256"] is None
    assert env["git_commit"] is None and env["git_dirty"] is None


def test_the_images_lock_and_commit_are_recorded(no_checkout, monkeypatch):
    kept = no_checkout / "share" / "requirements"
    kept.mkdir(parents=True)
    lock = b"aiohttp==3.12.15 --hash=sha256:0123\n"
    (kept / "runtime.txt").write_bytes(lock)
    monkeypatch.setenv(provenance.LOCKS_DIR, str(no_checkout / "share"))
    monkeypatch.setenv("GEMFINDER_GIT_COMMIT", "0f1e2d3c" * 5)
    env = provenance.environment()
    # only the lock the image keeps (it installs no dev lock), hashed as the checkout's are
    assert env["requirements_lock_sha256"] == {
        "requirements/runtime.txt": hashlib.sha256(lock).hexdigest()
    }
    assert env["git_commit"] == "0f1e2d3c" * 5 and env["git_dirty"] is None


def test_an_empty_commit_build_arg_is_recorded_as_null(no_checkout, monkeypatch):
    monkeypatch.setenv("GEMFINDER_GIT_COMMIT", "")  # docker build without --build-arg
    assert provenance.environment()["git_commit"] is None


def test_the_dockerfile_keeps_the_lock_where_provenance_looks_and_passes_the_commit():
    text = (REPO / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]  # the runtime stage
    locks_dir = re.search(r"^ENV GEMFINDER_LOCKS_DIR=(\S+)$", final, re.M).group(1)
    kept = f"{locks_dir}/requirements/runtime.txt"
    assert f"COPY requirements/runtime.txt {kept}\n" in final
    assert f"-r {kept}" in final and f"rm {kept}" not in final and "rm -f " + kept not in final
    assert re.search(r"^ARG GIT_COMMIT", final, re.M)
    assert re.search(r"^ENV GEMFINDER_GIT_COMMIT=\$GIT_COMMIT$", final, re.M)
