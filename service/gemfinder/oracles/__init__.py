"""Oracles: answer one (candidate, item) pull with a graded 0/1, or a counted failure.

`InferenceOracle` calls live endpoints through their backend (gemfinder.backends: TGI
/generate, OpenAI-compatible chat or completions); `ReplayOracle` answers from a correctness
matrix. Both count their events in an `OracleStats`.
"""

from gemfinder.oracles.base import RETRYABLE, FailureKind, Oracle, OracleResult
from gemfinder.oracles.endpoints import (
    PLACEHOLDER_TOKEN,
    EndpointConfig,
    load_endpoint_configs,
)
from gemfinder.oracles.inference import InferenceOracle
from gemfinder.oracles.replay import ReplayOracle
from gemfinder.oracles.retry import RetryPolicy, classify
from gemfinder.oracles.stats import OracleStats

__all__ = [
    "PLACEHOLDER_TOKEN",
    "RETRYABLE",
    "EndpointConfig",
    "FailureKind",
    "InferenceOracle",
    "Oracle",
    "OracleResult",
    "OracleStats",
    "ReplayOracle",
    "RetryPolicy",
    "classify",
    "load_endpoint_configs",
]
