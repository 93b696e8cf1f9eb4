"""The committed gRPC stubs match proto/ and the contract follows the protobuf style rules."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from gemfinder.v1 import gemfinder_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_fresh():
    out = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_freshness_ignores_generator_version_stamps(tmp_path):
    """A grpcio-tools patch release restamps versions in the stubs; that alone is not stale."""
    gen = load_generator()
    committed = tmp_path / "committed"
    shutil.copytree(gen.OUT_DIR / gen.PACKAGE, committed / gen.PACKAGE)
    grpc_stub = committed / gen.PACKAGE / "gemfinder_pb2_grpc.py"
    text = grpc_stub.read_text()
    assert "GRPC_GENERATED_VERSION = '" in text
    grpc_stub.write_text(text.replace("GRPC_GENERATED_VERSION = '", "GRPC_GENERATED_VERSION = '9"))
    fresh = tmp_path / "fresh"
    assert gen.stale_files(committed, fresh, gen.generate(fresh)) == []


def test_freshness_catches_a_changed_proto(tmp_path, monkeypatch):
    """A field added to the .proto without regenerating makes the committed stubs stale."""
    gen = load_generator()
    protos = tmp_path / "proto"
    shutil.copytree(gen.PROTO_DIR / "gemfinder", protos / "gemfinder")
    source = protos / "gemfinder" / "v1" / "gemfinder.proto"
    text = source.read_text()
    anchor = "message CancelSearchRequest {"
    assert anchor in text
    source.write_text(text.replace(anchor, anchor + "\n  string added_by_test = 99;"))
    monkeypatch.setattr(gen, "PROTO_DIR", protos)
    fresh = tmp_path / "fresh"
    stale = gen.stale_files(gen.OUT_DIR, fresh, gen.generate(fresh))
    assert "gemfinder/v1/gemfinder_pb2.py" in stale
    assert "gemfinder/v1/gemfinder_pb2.pyi" in stale


def test_enums_start_with_unspecified():
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        zero = enum.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), zero


def test_request_and_response_per_rpc():
    service = pb.DESCRIPTOR.services_by_name["ModelSearchService"]
    assert pb.DESCRIPTOR.package == "gemfinder.v1"
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
