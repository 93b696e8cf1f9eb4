# gemfinder service image (k8s/kustomization.yaml `images:`):
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t gemfinder:0.1.0 .
# Stage 1 builds the wheel the way scripts/install.sh builds it (maturin, release profile, the
# toolchain rust-toolchain.toml pins, Cargo.lock as written); stage 2 installs the locked runtime
# dependencies (requirements/runtime.txt, hashes required; the `lm-eval` extra included, so the
# server builds lm-evaluation-harness tasks; no torch) and that wheel into python:3.11-slim and
# runs `gemfinder serve` as a non-root user. Checked statically by `hadolint Dockerfile`.

# The pinned Rust toolchain, taken whole from the official image of that version (no curl | sh).
FROM rust:1.95.0-slim-bookworm AS rust

FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CARGO_TERM_COLOR=never \
    RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
# Debian package versions are fixed by the base image's point release; pinning them here would
# break the build at the next point release, which removes the old versions from the mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock rust-toolchain.toml README.md ./
COPY core_rs core_rs
COPY service service
# Same build as `pip install .` in scripts/install.sh: pyproject's build backend (maturin) and
# [tool.maturin] settings (python-source, module-name, features, release profile, locked).
RUN python3 -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# No Debian package is added: the sandbox calls unshare/seccomp/Landlock through libc itself.
RUN groupadd --system --gid 10001 gemfinder \
 && useradd --system --uid 10001 --gid gemfinder --home-dir /var/lib/gemfinder \
      --no-create-home --shell /usr/sbin/nologin gemfinder \
 && install -d -o gemfinder -g gemfinder /var/lib/gemfinder
# The lock stays in the image: provenance (gemfinder.provenance) records its SHA-256 with every
# search, from GEMFINDER_LOCKS_DIR, as an editable install records its checkout's.
ENV GEMFINDER_LOCKS_DIR=/usr/local/share/gemfinder
COPY requirements/runtime.txt /usr/local/share/gemfinder/requirements/runtime.txt
RUN python3 -m pip install --require-hashes --no-deps \
      -r /usr/local/share/gemfinder/requirements/runtime.txt
COPY --from=builder /wheels /wheels
RUN python3 -m pip install --no-deps /wheels/*.whl && rm -rf /wheels \
 && python3 -m pip check \
 && python3 -c "import gemfinder._core as c; print('gemfinder._core', c.__version__, 'installed')" \
 && python3 -c "import lm_eval.tasks, importlib.util as u; assert not u.find_spec('torch')"
USER 10001:10001
WORKDIR /var/lib/gemfinder
# Listen on all interfaces in the container; the Deployment sets the same through its ConfigMap.
ENV GEMFINDER_ADDRESS=0.0.0.0:50051 GEMFINDER_METRICS_PORT=9464 \
    GEMFINDER_DB=/var/lib/gemfinder/gemfinder.db
# The commit the image was built from, recorded with every search (there is no checkout to ask):
# docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)"; empty (recorded as null) without.
# Last, so that a new commit rebuilds no layer above.
ARG GIT_COMMIT=""
ENV GEMFINDER_GIT_COMMIT=$GIT_COMMIT
LABEL org.opencontainers.image.revision=$GIT_COMMIT
EXPOSE 50051 9464
VOLUME ["/var/lib/gemfinder"]
ENTRYPOINT ["gemfinder", "serve"]
