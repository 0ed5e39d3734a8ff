"""Logging of the service: text or one JSON object a line, with addresses masked and no secrets.

What is never logged: tokens (only the token's name), request and message
bodies, full phone numbers or email addresses. Paths are logged through
``mask_path`` (``/v1/suppressions/sms/+33612345678`` becomes
``/v1/suppressions/sms/+33*******78``), so a suppression or a send id that
holds a number does not leak it either.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import msgspec
from aiohttp.abc import AbstractAccessLogger

__all__ = ["AccessLog", "JsonFormatter", "mask", "mask_path", "setup_logging"]

_DIGITS = re.compile(r"(\+?\d{2})(\d{3,})(\d{2})")
_EMAIL = re.compile(r"([^/@\s%]{1,2})[^/@\s]*(@|%40)([^/\s]+)")
#: The attributes every LogRecord has; anything else came in ``extra=`` and goes into the JSON object.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def mask(text: str) -> str:
    """``text`` with runs of digits that may be phone numbers and email local parts masked."""
    text = _DIGITS.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
    return _EMAIL.sub(lambda m: m.group(1) + "***" + m.group(2) + m.group(3), text)


def mask_path(path: str) -> str:
    """A request path fit for a log line: numbers and addresses masked, the query string dropped."""
    return mask(path.split("?", 1)[0])


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, and the record's ``extra`` fields."""

    _encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._encode(out).decode()


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Send the root logger to stderr as ``text`` or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's own access log is replaced by AccessLog; its server errors stay.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class AccessLog(AbstractAccessLogger):
    """One record per request: method, masked path, status, duration, the token's name; never headers."""

    def log(self, request: Any, response: Any, time: float) -> None:
        """Log one answered request on ``sendcore.access``."""
        from .api import TOKEN

        token = request.get(TOKEN)
        logging.getLogger("sendcore.access").info(
            "%s %s %d %.1fms", request.method, mask_path(request.path), response.status, time * 1000,
            extra={"method": request.method, "path": mask_path(request.path), "status": response.status,
                   "ms": round(time * 1000, 2), "token": token.name if token is not None else None,
                   "remote": request.remote},
        )
