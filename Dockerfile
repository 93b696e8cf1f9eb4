# gemfinder service image: `docker build -t gemfinder:0.1.0 .` (k8s/kustomization.yaml `images:`).
# Stage 1 builds the wheel the way scripts/install.sh builds it (maturin, release profile);
# stage 2 installs that wheel into python:3.11-slim and runs `gemfinder serve` as a non-root user.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CARGO_TERM_COLOR=never
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
ENV PATH=/root/.cargo/bin:$PATH
RUN python3 -m pip install --upgrade pip "maturin>=1.7,<2"
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock README.md ./
COPY core_rs core_rs
COPY service service
# Same build as `pip install .` in scripts/install.sh: pyproject's [tool.maturin] settings
# (python-source, module-name, features, release profile), one abi3 wheel.
RUN maturin build --release --out /wheels

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# util-linux gives the MBPP grader's sandbox `unshare` (scripts/install.sh installs it too).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gemfinder \
 && useradd --system --uid 10001 --gid gemfinder --home-dir /var/lib/gemfinder \
      --no-create-home --shell /usr/sbin/nologin gemfinder \
 && install -d -o gemfinder -g gemfinder /var/lib/gemfinder
COPY --from=builder /wheels /wheels
RUN python3 -m pip install /wheels/*.whl && rm -rf /wheels \
 && python3 -c "import gemfinder._core as c; print('gemfinder._core', c.__version__, 'installed')"
USER 10001:10001
WORKDIR /var/lib/gemfinder
# Listen on all interfaces in the container; the Deployment sets the same through its ConfigMap.
ENV GEMFINDER_ADDRESS=0.0.0.0:50051 GEMFINDER_METRICS_PORT=9464 \
    GEMFINDER_DB=/var/lib/gemfinder/gemfinder.db
EXPOSE 50051 9464
VOLUME ["/var/lib/gemfinder"]
ENTRYPOINT ["gemfinder", "serve"]
