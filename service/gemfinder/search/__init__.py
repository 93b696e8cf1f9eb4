"""Searches: the spec, the runner driving the Rust scheduler, events, results, the manager."""

from gemfinder.search.spec import Limits, SearchSpec

__all__ = ["Limits", "SearchSpec"]
