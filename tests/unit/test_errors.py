"""The error tree crosses gRPC and comes back as the same class with the same fields."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from dora.api import errors
from dora.api.errors import FieldViolation


class FakeRpcError(grpc.RpcError):
    """What a failed call raises on the client: a code, details and trailing metadata."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str | None,
        trailers: Sequence[tuple[str, str | bytes]] | None = (),
    ) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailers = trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> Sequence[tuple[str, str | bytes]] | None:
        return self._trailers


def over_the_wire(error: errors.DoraError) -> errors.DoraError:
    code, message, trailers = errors.to_status(error)
    return errors.from_rpc_error(FakeRpcError(code, message, trailers))


TWO_BAD_FIELDS = errors.Invalid.of([
    FieldViolation("spec.selectors.gpu.count", "must be >= 0"),
    FieldViolation("spec.config.restartPolicy", "must be one of Never, Always, not 'x'"),
])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound("workload/a in z/w not found"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("zone/z exists"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.Conflict("workload/a was modified"), grpc.StatusCode.ABORTED),
        (errors.Invalid("must be >= 0", field="spec.selectors.gpu.count"),
         grpc.StatusCode.INVALID_ARGUMENT),
        (TWO_BAD_FIELDS, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Invalid("f.yaml:3:7: found a tab"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Forbidden("no Apply on Workload in w"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unauthenticated("bad token"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.Gone("resourceVersion 3 is compacted"), grpc.StatusCode.OUT_OF_RANGE),
        (errors.Unavailable("etcd is down"), grpc.StatusCode.UNAVAILABLE),
        (errors.DoraError("something else"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_round_trip(error: errors.DoraError, code: grpc.StatusCode) -> None:
    sent_code, message, _ = errors.to_status(error)
    assert sent_code == code
    assert message == error.message
    back = over_the_wire(error)
    assert type(back) is type(error)
    assert back.code == code
    assert back.message == error.message
    assert back.violations == error.violations


def test_invalid_keeps_every_field_in_order() -> None:
    back = over_the_wire(TWO_BAD_FIELDS)
    assert isinstance(back, errors.Invalid)
    assert [v.field for v in back.violations] == [
        "spec.selectors.gpu.count", "spec.config.restartPolicy",
    ]
    assert str(back) == (
        "spec.selectors.gpu.count: must be >= 0; "
        "spec.config.restartPolicy: must be one of Never, Always, not 'x'"
    )


def test_violations_travel_on_other_classes_too() -> None:
    error = errors.Conflict(
        "stale", violations=(FieldViolation("metadata.resourceVersion", "is 7, not 3"),)
    )
    back = over_the_wire(error)
    assert type(back) is errors.Conflict
    assert back.violations == error.violations


def test_status_detail_is_a_google_rpc_bad_request() -> None:
    _, _, trailers = errors.to_status(TWO_BAD_FIELDS)
    ((key, value),) = trailers
    assert key == "grpc-status-details-bin"
    assert isinstance(value, bytes)
    status = status_pb2.Status.FromString(value)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == TWO_BAD_FIELDS.message
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("spec.selectors.gpu.count", "must be >= 0"),
        ("spec.config.restartPolicy", "must be one of Never, Always, not 'x'"),
    ]


def test_no_detail_without_violations() -> None:
    _, _, ((_, value),) = errors.to_status(errors.NotFound("gone"))
    assert list(status_pb2.Status.FromString(value).details) == []


@pytest.mark.parametrize("trailers", [None, (), (("other-key", "v"), ("x-bin", b"\x00"))])
def test_plain_status_without_details(
    trailers: Sequence[tuple[str, str | bytes]] | None,
) -> None:
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such zone", trailers))
    assert type(back) is errors.NotFound
    assert back.message == "no such zone"
    assert back.violations == ()


def test_deadline_exceeded_is_unavailable() -> None:
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow"))
    assert type(back) is errors.Unavailable
    assert back.message == "too slow"


def test_unknown_code_keeps_its_code() -> None:
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "boom"))
    assert type(back) is errors.DoraError
    assert back.code == grpc.StatusCode.INTERNAL
    # The class keeps its own code; only that instance carries INTERNAL.
    assert errors.DoraError.code == grpc.StatusCode.UNKNOWN


def test_empty_details_fall_back_to_the_code_name() -> None:
    back = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, None))
    assert type(back) is errors.Forbidden
    assert back.message == "PERMISSION_DENIED"


def test_invalid_with_a_field() -> None:
    error = errors.Invalid("must be >= 0", field="spec.replica.count")
    assert error.message == "spec.replica.count: must be >= 0"
    assert error.violations == (FieldViolation("spec.replica.count", "must be >= 0"),)
    assert str(FieldViolation("", "bad")) == "bad"
    assert isinstance(error, errors.DoraError)
