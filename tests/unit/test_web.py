"""dora-web's pieces that need no cluster: the bearer token, the Origin check, where
an apply's errors are in the text, and statuses for errors."""

from __future__ import annotations

import pytest

from dora.api import errors
from dora.web import apply, http, security


def test_bearer_token_accepts_only_a_bearer_header() -> None:
    assert security.bearer_token("Bearer dora_abc-123") == "dora_abc-123"
    assert security.bearer_token("bearer  dora_abc ") == "dora_abc"
    for bad in (None, "", "Basic dXNlcg==", "Bearer", "Bearer two words", "Bearer é"):
        with pytest.raises(errors.Unauthenticated):
            security.bearer_token(bad)


def scope(origin: str | None, host: str = "127.0.0.1:8080") -> security.Scope:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "http", "headers": headers}


def test_origin_is_this_host_or_an_allowed_one() -> None:
    allowed = frozenset({"https://dora.example.org"})
    assert security.origin_allowed(scope(None), allowed)
    assert security.origin_allowed(scope("http://127.0.0.1:8080"), allowed)
    assert security.origin_allowed(scope("https://dora.example.org"), allowed)
    assert not security.origin_allowed(scope("http://evil.example"), allowed)
    assert not security.origin_allowed(scope("http://127.0.0.1:8081"), allowed)
    assert not security.origin_allowed(scope("null"), allowed)


def test_parse_locates_a_syntax_error_and_a_bad_field() -> None:
    with pytest.raises(apply.ApplyError) as syntax:
        apply.parse("kind: Workload\nmetadata: [\n")
    [where] = syntax.value.located
    assert where["line"] == 3 and where["column"] == 1
    with pytest.raises(apply.ApplyError) as field:
        apply.parse("kind: Workload\nmetadata:\n  name: x\nspec:\n  bogus: 1\n")
    [where] = field.value.located
    assert (where["field"], where["line"], where["column"]) == ("spec.bogus", 5, 3)
    with pytest.raises(apply.ApplyError):
        apply.parse("# nothing\n")
    [parsed] = apply.parse("kind: Workload\nmetadata:\n  name: x\n")
    assert parsed.obj.metadata.name == "x"


def test_error_statuses() -> None:
    cases = [(errors.Invalid("x"), 422), (errors.NotFound("x"), 404),
             (errors.Conflict("x"), 409), (errors.Forbidden("x"), 403),
             (errors.Unauthenticated("x"), 401), (errors.Gone("x"), 410),
             (errors.Unavailable("x"), 503), (errors.DoraError("x"), 502)]
    for error, status in cases:
        response = http.error_response(error)
        assert response.status_code == status, error
