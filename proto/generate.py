"""Regenerate the Python stubs of proto/gemfinder/v1/*.proto into service/gemfinder/v1/.

    python proto/generate.py          # write the stubs
    python proto/generate.py --check  # exit 1 when the committed stubs are stale (CI)

The output package mirrors the proto package (`gemfinder.v1`), so the imports protoc writes
(`from gemfinder.v1 import ...`) resolve inside the installed `gemfinder` package.
"""

from __future__ import annotations

import argparse
import filecmp
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the stubs are stale")
    args = parser.parse_args()
    if not args.check:
        files = generate(OUT_DIR)
        print("wrote " + ", ".join(str(f) for f in files))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        committed = {p.relative_to(OUT_DIR) for p in (OUT_DIR / PACKAGE).glob("*.py*")}
        stale = [str(f) for f in files if not (OUT_DIR / f).is_file()]
        stale += [
            str(f)
            for f in files
            if (OUT_DIR / f).is_file()
            and not filecmp.cmp(Path(tmp) / f, OUT_DIR / f, shallow=False)
        ]
        stale += [str(f) for f in committed - set(files)]
    if stale:
        print(f"stale generated stubs: {', '.join(stale)}; run python proto/generate.py")
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
