"""Studies: search quality, reproduction of the published results, grader agreement."""
