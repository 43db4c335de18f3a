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

grpc and the ``google.rpc`` messages are imported when first needed (a code read,
a status built or parsed), not with this module: doractl imports the error tree
for every command line, ``--help`` included, and grpc alone costs it about 0.1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    import grpc

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


class _Code:
    """A class's gRPC status code, named here and looked up in ``grpc`` when read;
    an instance may set its own (``error.code = ...``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    @overload
    def __get__(self, obj: None, owner: type) -> grpc.StatusCode: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> grpc.StatusCode: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> grpc.StatusCode:
        if obj is not None and self.attribute in vars(obj):
            own: grpc.StatusCode = vars(obj)[self.attribute]
            return own
        import grpc

        return grpc.StatusCode[self.name]

    def __set__(self, obj: object, value: grpc.StatusCode) -> None:
        vars(obj)[self.attribute] = value


class DoraError(Exception):
    """Base of every error Dora reports to a user."""

    code = _Code("UNKNOWN")

    def __init__(self, message: str, *, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


class NotFound(DoraError):
    code = _Code("NOT_FOUND")


class AlreadyExists(DoraError):
    code = _Code("ALREADY_EXISTS")


class Conflict(DoraError):
    code = _Code("ABORTED")


class Invalid(DoraError):
    """Bad input. ``field`` is the path of the offending field (``spec.replica.count``)."""

    code = _Code("INVALID_ARGUMENT")

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
    code = _Code("PERMISSION_DENIED")


class Unauthenticated(DoraError):
    code = _Code("UNAUTHENTICATED")


class Gone(DoraError):
    code = _Code("OUT_OF_RANGE")


class Exhausted(DoraError):
    """A limit the caller hit: calls in flight, a message's size. Retry later, or
    send less."""

    code = _Code("RESOURCE_EXHAUSTED")


class Unavailable(DoraError):
    code = _Code("UNAVAILABLE")


_CLASSES: tuple[type[DoraError], ...] = (
    NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Unauthenticated, Gone, Exhausted,
    Unavailable,
)


def to_status(error: DoraError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The gRPC code, message and trailing metadata (``google.rpc.Status``) for ``error``."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

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
    import grpc
    from google.rpc import error_details_pb2, status_pb2

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
    cls = next((c for c in _CLASSES if c.code == code), DoraError)
    if cls is Invalid:
        return Invalid(message, violations=tuple(violations))
    error = cls(message, violations=tuple(violations))
    if cls is DoraError:
        error.code = code
    return error


def _rpc_code(code: grpc.StatusCode) -> int:
    from google.rpc import code_pb2

    value: int = code.value[0]
    return value if value in code_pb2.Code.values() else code_pb2.UNKNOWN
