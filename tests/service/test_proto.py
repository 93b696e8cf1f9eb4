"""The committed gRPC stubs match proto/ and the contract follows the protobuf style rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gemfinder.v1 import gemfinder_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh():
    out = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


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
