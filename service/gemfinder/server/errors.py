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
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "aborted": grpc.StatusCode.ABORTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}
DETAILS_KEY = "grpc-status-details-bin"


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
    message = "internal error" if kind == "internal" else str(exc)
    status = status_pb2.Status(code=code.value[0], message=message)
    field = field_of(exc)
    if field is not None:
        reason = exc.reason if isinstance(exc, UserError) else str(exc).split(": ", 1)[-1]
        violations = getattr(exc, "violations", None) or [(field, reason)]
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
