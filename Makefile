# The few commands that install, lint, test and benchmark gemfinder; .ci/run calls the same.
.PHONY: install lint test test-rust test-python bench

install:
	bash scripts/install.sh

lint:
	cargo fmt --all --check
	cargo clippy --all-targets --features python -- -D warnings
	ruff check service tests bench
	ruff format --check service tests bench
	python3 -m mypy.stubtest gemfinder._core
	python3 proto/generate.py --check

test: test-rust test-python

test-rust:
	cargo test --release

test-python:
	python3 -m pytest -q tests

bench:
	python3 bench/simulator_speed.py
