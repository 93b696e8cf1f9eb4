# The few commands that install, lint, test and benchmark gemfinder; .ci/run calls the same.
.PHONY: install lock lint test test-rust test-python bench

install:
	bash scripts/install.sh

# Update requirements/*.txt from pyproject.toml (the only step that moves Python versions).
lock:
	bash scripts/lock.sh

lint:
	cargo fmt --all --check
	cargo clippy --locked --all-targets --features python -- -D warnings
	ruff check service tests bench
	ruff format --check service tests bench
	python3 -m mypy.stubtest gemfinder._core
	python3 proto/generate.py --check
	hadolint Dockerfile
	cd proto && buf lint

test: test-rust test-python

test-rust:
	cargo test --locked --release

test-python:
	python3 -m pytest -q tests

bench:
	python3 -m bench.speed.simulator_speed
