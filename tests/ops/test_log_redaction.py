"""Redaction keeps every handler working: uvicorn's access formatter unpacks
`record.args` itself, so the filter must keep args' shape while removing secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter

from tradestore.identity import redact


class _Strict(logging.StreamHandler):
    """A handler that fails the test instead of printing a traceback to stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise AssertionError(f"handler failed on {record.msg!r} {record.args!r}")


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = _Strict(out)
    handler.setFormatter(
        AccessFormatter(LOGGING_CONFIG["formatters"]["access"]["fmt"], use_colors=False)
    )
    handler.addFilter(redact.SecretsFilter())
    logger = logging.getLogger("uvicorn.access.test")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    redact.install()
    try:
        yield out
    finally:
        redact.uninstall()
        logger.removeHandler(handler)


def _access(path: str, status: int = 200) -> None:
    # Exactly how uvicorn's h11/httptools protocols log a request.
    logging.getLogger("uvicorn.access.test").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", path, "1.1", status
    )


def test_an_access_line_is_written_for_every_request(access_log: io.StringIO) -> None:
    _access("/health")
    _access("/api/v1/orders?limit=5", 404)
    lines = access_log.getvalue().splitlines()
    assert lines == [
        'INFO:     127.0.0.1:5555 - "GET /health HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:5555 - "GET /api/v1/orders?limit=5 HTTP/1.1" 404 Not Found',
    ]


def test_a_secret_in_the_request_line_is_redacted_and_the_line_still_written(
    access_log: io.StringIO,
) -> None:
    redact.register_secret("sk-live-0123456789")
    _access("/hook?token=abcdefgh12345678&x=1")
    _access("/keys/sk-live-0123456789")
    text = access_log.getvalue()
    assert "abcdefgh12345678" not in text and "sk-live-0123456789" not in text
    lines = text.splitlines()
    assert (
        lines[0]
        == f'INFO:     127.0.0.1:5555 - "GET /hook?token={redact.REDACTED}&x=1 HTTP/1.1" 200 OK'
    )
    assert lines[1] == f'INFO:     127.0.0.1:5555 - "GET /keys/{redact.REDACTED} HTTP/1.1" 200 OK'


def test_a_secret_split_between_template_and_argument_is_still_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact.install()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("tradestore.test").info("password=%s user=%s", "hunter2xyz", "bob")
            logging.getLogger("tradestore.test").info("retry %d of %d", 2, 5)
    finally:
        redact.uninstall()
    assert "hunter2xyz" not in caplog.text
    assert "user=bob" in caplog.text and "retry 2 of 5" in caplog.text
    # records without secrets are left as they were made
    assert caplog.records[1].args == (2, 5)
