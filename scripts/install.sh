#!/usr/bin/env bash
# Install what gemfinder needs on a fresh machine of this kind (Rust, Python 3.11, Debian).
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # util-linux gives the sandbox `unshare`; prometheus gives promtool for the alert-rule tests.
  missing=""
  for pkg in util-linux prometheus; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    { apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    } || echo "warning: could not install$missing; tests that need them will fail" >&2
  fi
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
python3 -m pip install -q --upgrade pip
# Builds the Rust extension with maturin (release profile) and installs the `gemfinder` command.
python3 -m pip install -q ".[test]"
# pyenv only finds new console scripts after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
python3 -c "import gemfinder._core as c; print('gemfinder._core', c.__version__, 'installed')"
command -v gemfinder >/dev/null || echo "warning: 'gemfinder' is not on PATH; use 'python3 -m gemfinder'" >&2
