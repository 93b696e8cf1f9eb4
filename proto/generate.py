"""Regenerate the Python stubs of proto/gemfinder/v1/*.proto into service/gemfinder/v1/.

    python proto/generate.py          # write the stubs
    python proto/generate.py --check  # exit 1 when the committed stubs no longer match proto/ (CI)

The output package mirrors the proto package (`gemfinder.v1`), so the imports protoc writes
(`from gemfinder.v1 import ...`) resolve inside the installed `gemfinder` package.

`--check` compares what the stubs *mean*, not their bytes: the serialized FileDescriptorProto each
`_pb2.py` embeds, and the RPC surface (stub classes and their methods) of each `_pb2_grpc.py`,
against a fresh compile of proto/. A changed .proto changes the descriptor and is caught; a new
patch release of grpcio-tools that only restamps its version in the generated text is not a
reason to fail (it made the old byte comparison fail on every fresh machine).
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "service"
PACKAGE = Path("gemfinder") / "v1"
INIT = '"""Generated gRPC stubs of gemfinder.v1 (python proto/generate.py); do not edit."""\n'


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted((PROTO_DIR / PACKAGE).glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / PACKAGE / "__init__.py").write_text(INIT, encoding="utf-8")
    return sorted(p.relative_to(out) for p in (out / PACKAGE).iterdir() if p.is_file())


def meaning(path: Path) -> object:
    """What a generated file says, independent of the generator's version stamps."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.name.endswith("_pb2.py"):
        # The one call `_descriptor_pool.Default().AddSerializedFile(b'...')` holds the descriptor.
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile"
            ):
                return ast.literal_eval(node.args[0])
        return None
    # _pb2_grpc.py and .pyi follow from the descriptor: compare the names they declare (classes,
    # methods, fields), which is what callers and type checkers see.
    return surface(tree.body)


def surface(body: list[ast.stmt]) -> list[object]:
    names: list[object] = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            names.append((node.name, surface(node.body)))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return sorted(names, key=repr)


def stale_files(committed_dir: Path, fresh_dir: Path, fresh: list[Path]) -> list[str]:
    """The generated files under committed_dir that differ in meaning from those in fresh_dir."""
    committed = {p.relative_to(committed_dir) for p in (committed_dir / PACKAGE).glob("*.py*")}
    stale = [str(f) for f in committed - set(fresh)]
    for f in fresh:
        mine = committed_dir / f
        if not mine.is_file() or meaning(mine) != meaning(fresh_dir / f):
            stale.append(str(f))
    return sorted(stale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the stubs are stale")
    args = parser.parse_args()
    if not args.check:
        files = generate(OUT_DIR)
        print("wrote " + ", ".join(str(f) for f in files))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = stale_files(OUT_DIR, Path(tmp), generate(Path(tmp)))
    if stale:
        print(f"stale generated stubs: {', '.join(stale)}; run python proto/generate.py")
        return 1
    print("generated stubs match proto/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
