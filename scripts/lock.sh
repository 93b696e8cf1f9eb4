#!/usr/bin/env bash
# Update the Python lock files from pyproject.toml (`make lock`). The only command that changes
# which versions every machine installs: run it on purpose, review the diff, commit it.
#
#   requirements/runtime.txt  the service's dependencies with the `lm-eval` extra (the Docker
#                             image installs these, so a server can build lm-eval tasks)
#   requirements/dev.txt      runtime + the `test` extra (scripts/install.sh, .ci/run)
#
# Both are universal (any OS / CPU / Python >= 3.11, by environment markers) and carry every
# wheel's hash, so `pip install --require-hashes` refuses anything else. uv resolves; pip installs.
# Each file keeps its own earlier pins, so a package new to one of them may resolve newer there:
# tests/test_locks.py fails then; `bash scripts/lock.sh --upgrade-package NAME` aligns both.
# Pass uv arguments through, e.g. `bash scripts/lock.sh --upgrade-package grpcio`.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
python3 -m pip install -q "uv==$UV_VERSION"
for target in runtime dev; do
  extra=(--extra lm-eval)
  [ "$target" = dev ] && extra+=(--extra test)
  python3 -m uv pip compile pyproject.toml "${extra[@]}" --universal --python-version 3.11 \
    --generate-hashes --quiet --custom-compile-command "make lock" \
    -o "requirements/$target.txt" "$@"
  echo "wrote requirements/$target.txt ($(grep -c '==' "requirements/$target.txt") pins)"
done
