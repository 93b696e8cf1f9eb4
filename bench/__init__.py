"""Benchmarks and studies, run from the repository root as `python -m bench.<group>.<name>`
(bench/README.md lists them)."""
