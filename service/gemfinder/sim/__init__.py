"""The simulation kit, apart from the serving path: a simulated fleet of endpoints (fleet/),
synthetic model trees (trees/), correctness matrices (matrix.py), the simulator behind
`gemfinder simulate` (simulation.py) and the self-contained demo (demo.py)."""
