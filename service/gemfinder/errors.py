"""Errors a user can fix: each names a field and a reason; the CLI prints one line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from a user: printed as one line by the CLI, INVALID_ARGUMENT over gRPC."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
