"""Logging as logfmt (default) or JSON lines, with the structured fields probes attach."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import warnings
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed in ``extra=`` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    if record.exc_info and record.exc_info[0] is not None:
        out["exception"] = logging.Formatter().formatException(record.exc_info)
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    # Other control characters (\r, ESC, ...) from a server's answer must not reach a terminal
    # or a log shipper raw.
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", escaped)
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… msg="…" target=… check=…`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One logfmt line."""
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is at the time, not the one at set-up."""

    @property
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the daemon: a library's warning (a deprecation in
    cryptography when it parses an odd CA in a bundle, say) becomes one line in the log's own
    format instead of two raw lines on stderr that a log shipper cannot parse."""
    logging.getLogger("py.warnings").warning(
        str(message), extra={"category": category.__name__, "location": f"{filename}:{lineno}"}
    )


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Send every log line, and every warning, to stderr in the chosen format."""
    handler = _StderrHandler()
    # On the handler: records passed up from child loggers (apscheduler, aiohttp) are checked
    # against the handler's level, never the root logger's.
    handler.setLevel(level.upper())
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; that is the exporter's debug level.
    logging.getLogger("apscheduler").setLevel(logging.WARNING if level != "debug" else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(
        logging.WARNING if level != "debug" else logging.DEBUG
    )
    warnings.showwarning = _log_warning
