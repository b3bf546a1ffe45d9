"""Log output: levels apply to every logger, and logfmt values cannot carry raw control bytes."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from exporter.logs import LogfmtFormatter, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_error_level_hides_warnings_of_library_loggers(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """--log.level=error means no warnings, also from APScheduler's own loggers."""
    setup_logging("error")
    logging.getLogger("apscheduler.scheduler").warning("maximum number of running instances")
    logging.getLogger("exporter").error("config rejected")
    err = capsys.readouterr().err
    assert "maximum number of running instances" not in err
    assert "config rejected" in err


def test_logfmt_escapes_control_characters_from_servers() -> None:
    """A carriage return or escape sequence in a server's answer stays on one inert line."""
    record = logging.LogRecord(
        "exporter.probe", logging.WARNING, __file__, 1, "probe failed", (), None
    )
    record.error = "500: boom\r\x1b[31mfake line\ttab"
    line = LogfmtFormatter().format(record)
    assert "\r" not in line
    assert "\x1b" not in line
    assert '"500: boom\\x0d\\x1b[31mfake line\\x09tab"' in line
