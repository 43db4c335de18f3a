"""The Dora error tree, shared by the apiserver, the client and the CLI.

::

    DoraError
    ├── NotFound            NOT_FOUND
    ├── AlreadyExists       ALREADY_EXISTS
    ├── Conflict            ABORTED            stale resourceVersion
    ├── Invalid             INVALID_ARGUMENT   carries the field paths
    ├── Forbidden           PERMISSION_DENIED
    ├── Unauthenticated     UNAUTHENTICATED
    ├── Gone                OUT_OF_RANGE       watch or list version compacted
    ├── Exhausted           RESOURCE_EXHAUSTED too many calls at once, a message too big
    └── Unavailable         UNAVAILABLE

The server raises these; ``to_status`` turns one into a gRPC status with a
``google.rpc.BadRequest`` detail listing the fields. The client turns a gRPC
error back into the same class with ``from_rpc_error``, so code on both sides
catches ``errors.Conflict``, never a status code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


class DoraError(Exception):
    """Base of every error Dora reports to a user."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


class NotFound(DoraError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DoraError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(DoraError):
    code = grpc.StatusCode.ABORTED


class Invalid(DoraError):
    """Bad input. ``field`` is the path of the offending field (``spec.replica.count``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        if field and not violations:
            violations = (FieldViolation(field, message),)
            message = f"{field}: {message}"
        super().__init__(message, violations=violations)

    @classmethod
    def of(cls, violations: list[FieldViolation]) -> Invalid:
        """One error for several bad fields."""
        message = "; ".join(str(v) for v in violations)
        return cls(message, violations=tuple(violations))


class Forbidden(DoraError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DoraError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Gone(DoraError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Exhausted(DoraError):
    """A limit the caller hit: calls in flight, a message's size. Retry later, or
    send less."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DoraError):
    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE: dict[grpc.StatusCode, type[DoraError]] = {
    cls.code: cls
    for cls in (NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Unauthenticated, Gone,
                Exhausted, Unavailable)
}


def to_status(error: DoraError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The gRPC code, message and trailing metadata (``google.rpc.Status``) for ``error``."""
    status = status_pb2.Status(code=_rpc_code(error.code), message=error.message)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    return error.code, error.message, ((_DETAILS_KEY, status.SerializeToString()),)


class RpcFailure(Protocol):
    """What a failed gRPC call tells (``grpc.aio.AioRpcError`` has it)."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


def from_rpc_error(exc: RpcFailure) -> DoraError:
    """The Dora error a failed call stands for; unknown codes become a plain DoraError."""
    code = exc.code()
    message = exc.details() or code.name
    violations: list[FieldViolation] = []
    trailers: list[tuple[str, str | bytes]] = list(exc.trailing_metadata() or ())
    for key, value in trailers:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(message)
    cls = _BY_CODE.get(code, DoraError)
    if cls is Invalid:
        return Invalid(message, violations=tuple(violations))
    error = cls(message, violations=tuple(violations))
    if cls is DoraError:
        error.code = code
    return error


def _rpc_code(code: grpc.StatusCode) -> int:
    value: int = code.value[0]
    return value if value in code_pb2.Code.values() else code_pb2.UNKNOWN
