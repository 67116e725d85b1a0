"""Logging for the serving commands: events as text lines, the web access log as bare JSON.

The access log is one line per request, on the hot path: it gets its own handler that writes
the JSON line as it is (it carries its own time), not logging's timestamp formatting.
"""

from __future__ import annotations

import logging
import sys

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
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
    access.propagate = False
