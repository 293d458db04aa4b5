import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logs import REDACTED, configure_logging, get_logger, scrub_text


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging(service="testsvc", level="DEBUG", fmt="json", stream=buf)
    yield buf
    configure_logging(service="test", level="WARNING", fmt="json")


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_structlog_event_shape(stream: io.StringIO) -> None:
    get_logger("attune.test").info("launch_verified", iss="https://canvas.instructure.com", n=3)
    (line,) = lines(stream)
    assert line["event"] == "launch_verified"
    assert line["level"] == "info"
    assert line["logger"] == "attune.test"
    assert line["service"] == "testsvc"
    assert line["iss"] == "https://canvas.instructure.com"
    assert line["n"] == 3
    assert str(line["timestamp"]).endswith("Z")


@pytest.mark.parametrize("name", ["aiohttp.server", "aiokafka.conn", "asyncpg.pool"])
def test_library_log_lines_share_the_shape(stream: io.StringIO, name: str) -> None:
    logging.getLogger(name).warning("connection to %s lost", "broker-1")
    (line,) = lines(stream)
    assert line["event"] == "connection to broker-1 lost"
    assert line["logger"] == name
    assert line["level"] == "warning"
    assert line["service"] == "testsvc"


def test_bound_context_appears(stream: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-12345678"):
        get_logger("x").info("inside")
    get_logger("x").info("outside")
    inside, outside = lines(stream)
    assert inside["request_id"] == "req-12345678"
    assert "request_id" not in outside


def test_secrets_are_redacted(stream: io.StringIO) -> None:
    log = get_logger("x")
    log.info(
        "oops",
        id_token="eyJhbGciOi.secret.sig",
        registration_token="reg-tok",
        password="pw",
        state="st-123",
        nonce="n-123",
        statement_count=2,
        headers={"Authorization": "Bearer abc.def", "Accept": "text/html"},
        url="postgresql://attune:dbpass@db:5432/attune",
        note="sent Bearer eyJabc.def.ghi to platform",
    )
    logging.getLogger("asyncpg").error("cannot connect to postgresql://u:stdlibpass@h/db")
    text = stream.getvalue()
    for secret in (
        "eyJhbGciOi",
        "reg-tok",
        '"pw"',
        "st-123",
        "n-123",
        "abc.def",
        "dbpass",
        "eyJabc",
        "stdlibpass",
    ):
        assert secret not in text, secret
    first = lines(stream)[0]
    assert first["id_token"] == REDACTED
    assert first["statement_count"] == 2
    assert first["headers"] == {"Authorization": REDACTED, "Accept": "text/html"}


def test_exception_text_is_scrubbed(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("failed to reach postgresql://u:tracepass@h/db")
    except RuntimeError:
        get_logger("x").exception("boom")
    (line,) = lines(stream)
    assert "tracepass" not in json.dumps(line)
    assert "RuntimeError" in str(line["exception"])


def test_scrub_text() -> None:
    assert scrub_text("kafka://user:pw@host:9092") == f"kafka://user:{REDACTED}@host:9092"
    assert scrub_text("no secrets here") == "no secrets here"
