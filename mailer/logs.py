"""Logging for the serving commands: events as text lines, the web access log as bare JSON.

The access log is one line per request, on the hot path: it gets its own handler that writes
the JSON line as it is (it carries its own time), not logging's timestamp formatting, and
writes the lines of one turn of the event loop together.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

ACCESS_LOGGER = "optout.access"


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Record fields no line here prints, so not looked up for every record (the access log
    # makes one per request): thread name, process id, multiprocessing's process name.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # aiohttp's own access log would repeat ours without the token redaction.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosmtpd logs every SMTP command at INFO, addresses included: keep those out of the log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    access = logging.getLogger(ACCESS_LOGGER)
    if not access.handlers:
        handler = AccessLogHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
    access.propagate = False


class AccessLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the lines logged during one turn of the event loop in one write, at the start of
    the next turn, instead of one write (a system call) per request; outside a running loop,
    and at flush and close, at once. The lines and their order are the same."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_pending()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write_pending)

    def flush(self) -> None:
        self._write_pending()
        super().flush()

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            if not self._pending:
                return
            lines, self._pending = self._pending, []
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:
                # Like StreamHandler: a log that cannot be written does not fail the request.
                self.handleError(logging.makeLogRecord({"msg": lines[0]}))
