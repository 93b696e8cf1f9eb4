"""The one table from error kind to gRPC status, and the rich status sent for each error.

Every exception reaching the service boundary gets a stable kind: errors carrying a `kind`
attribute map through `STATUS_OF`, other `UserError`s and the core's `SearchError` are
`invalid_argument` (with a google.rpc.BadRequest field violation), anything else is `internal`.
A `failed_precondition` UserError (an unreachable endpoint) carries a google.rpc.PreconditionFailure
instead, one violation per field. An error with `violations` [(field, reason), ...] lists them all.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from gemfinder import _core
from gemfinder.errors import UserError

STATUS_OF: dict[str, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "aborted": grpc.StatusCode.ABORTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}
DETAILS_KEY = "grpc-status-details-bin"
# The status travels in the trailer, and gRPC clients refuse trailers above their metadata limit
# (8 KiB by default in grpc python, `grpc.max_metadata_size`) with RESOURCE_EXHAUSTED instead of
# the status sent: 1,000 bad candidates used to arrive that way. So the message is clipped to
# MAX_MESSAGE_BYTES of UTF-8 (percent-encoded on the wire: at most 3x), and the details list
# violations while the serialized status stays within MAX_DETAILS_BYTES (base64 on the wire:
# 4/3x; the first violation is always sent), at most MAX_VIOLATIONS, then one more that says
# how many were left out. Worst case about 7 KiB on the wire, 4.5 KiB for ASCII text.
MAX_MESSAGE_BYTES = 1024
MAX_DETAILS_BYTES = 2500
MAX_VIOLATIONS = 20
MAX_FIELD_BYTES = 200  # of one violation's field path
MAX_REASON_BYTES = 1000  # of one violation's description (a budget error takes ~400)


class ServiceError(Exception):
    """An error raised by a handler with its kind, e.g. ServiceError("aborted", "...")."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in STATUS_OF:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


def kind_of(exc: BaseException) -> str:
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind in STATUS_OF:
        return kind
    if isinstance(exc, UserError | _core.SearchError):
        return "invalid_argument"
    return "internal"


def field_of(exc: BaseException) -> str | None:
    if isinstance(exc, UserError):
        return exc.field
    if isinstance(exc, _core.SearchError):
        return f"spec.{exc.field}" if exc.field else "spec"
    return None


def rich_status(exc: BaseException) -> tuple[grpc.StatusCode, str, bytes]:
    """(code, message, serialized google.rpc.Status with details) for an exception."""
    kind = kind_of(exc)
    code = STATUS_OF[kind]
    message = clip("internal error" if kind == "internal" else str(exc), MAX_MESSAGE_BYTES)
    status = status_pb2.Status(code=code.value[0], message=message)
    field = field_of(exc)
    if field is not None:
        reason = exc.reason if isinstance(exc, UserError | _core.SearchError) else str(exc)
        violations = getattr(exc, "violations", None) or [(field, reason)]
        violations = fit_violations(violations, MAX_DETAILS_BYTES - len(message.encode()) - 16)
        detail = any_pb2.Any()
        if kind == "failed_precondition":
            what = getattr(exc, "precondition", "FAILED_PRECONDITION")
            detail.Pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=what, subject=f, description=r
                        )
                        for f, r in violations
                    ]
                )
            )
        else:
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=r)
                        for f, r in violations
                    ]
                )
            )
        status.details.append(detail)
    return code, message, status.SerializeToString()


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, ending in "..." when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "..."


def fit_violations(violations: list[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    """The violations to send: each part clipped, as many as fit in `budget` bytes (at most
    MAX_VIOLATIONS, at least one), then ("<first left out>", "and N more ...") when any is
    left out, so the trailer stays under clients' metadata limit whatever the request."""
    kept: list[tuple[str, str]] = []
    used = 0
    for field, reason in violations:
        pair = (clip(field, MAX_FIELD_BYTES), clip(reason, MAX_REASON_BYTES))
        size = len(pair[0].encode()) + len(pair[1].encode()) + 8  # + protobuf tags, lengths
        if kept and (len(kept) == MAX_VIOLATIONS or used + size > budget - 100):
            break  # 100: room for the summary below
        kept.append(pair)
        used += size
    left = len(violations) - len(kept)
    if left:
        first = clip(violations[len(kept)][0], MAX_FIELD_BYTES)
        kept.append(
            (
                first,
                f"and {left} more from this one on, not listed (at most {MAX_VIOLATIONS} are sent)",
            )
        )
    return kept
