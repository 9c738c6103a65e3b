"""Logging set-up for `qingfeng run` and the operator commands: plain or JSON lines, secrets masked.

The first line of defence is not logging secrets at all: httpx logs every request URL at INFO
and PTB's URLs contain the bot token, so httpx/httpcore are held at WARNING. The redaction
filter on every handler is the second line: it masks bot tokens, `access_token=…`,
`corpsecret=…`, `secret=…`, chat ids in query strings and database passwords, in the message
and in tracebacks, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

from bot.metrics import record_logged_error

MASK = "***"

# Query parameters whose values are secrets or personal identifiers (chat ids are personal data).
_SECRET_PARAMS = (
    "access_token", "corpsecret", "secret", "appsecret", "token", "encodingaeskey", "encoding_aes_key",
    "aes_key", "password", "passwd", "code", "openid", "userid", "chat_id", "signature", "msg_signature",
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Telegram bot tokens: "<bot id>:<35 chars>", alone or inside /bot<token>/ URLs.
    (re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}"), "<telegram-token>"),
    # key=value in query strings, form bodies and "key: value" in messages.
    (re.compile(r"(?i)\b(" + "|".join(_SECRET_PARAMS) + r")(=|\"?\s*:\s*\"?)([^&\s\"',;}]+)"),
     r"\1\2" + MASK),
    # Passwords in database URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), r"\1" + MASK + "@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and traceback text with secrets masked."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ErrorCounter(logging.Filter):
    """Counts ERROR records in `qingfeng_errors_total{kind}`, kind naming the component."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            record_logged_error(record.name)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that would put secrets or chat ids on the wire at INFO/DEBUG, or log every job run.
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "requests", "hpack", "telegram.ext.ExtBot", "wechatpy",
                 "apscheduler")


def setup_logging(level: str = "INFO", *, json_lines: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Replace the root handlers with one redacting handler; returns it (tests read its stream)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(RedactingFilter())
    handler.addFilter(ErrorCounter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn installs its own handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.captureWarnings(True)
    return handler
