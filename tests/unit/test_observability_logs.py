"""``--log-format json``: one parseable object per record, extras and exceptions kept."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dora.observability import endpoint, logs


def test_a_record_is_one_json_line_with_its_extras_and_exception() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JSONFormatter())
    logger = logging.getLogger("dora.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("bound %s", "w.0", extra={"request_id": "r-7", "count": 3})
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "bound w.0" and first["level"] == "WARNING"
    assert first["request_id"] == "r-7" and first["count"] == 3
    assert first["logger"] == "dora.test.json" and first["time"].endswith("Z")
    assert "ValueError: boom" in second["exception"]


def test_bad_formats_and_listen_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="log-format"):
        logs.configure(level="INFO", format="xml")
    for bad in ("9100", "host:", "a:b"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            endpoint.parse_listen(bad)
    assert endpoint.parse_listen(":9100") == ("0.0.0.0", 9100)
    assert endpoint.parse_listen("[::1]:9100") == ("::1", 9100)
