"""The access log's handler: every line written, whole and in order, the lines of one turn of
the event loop in one write."""

from __future__ import annotations

import asyncio
import io
import logging

from mailer.logs import AccessLogHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def access_logger(stream: CountingStream, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    handler = AccessLogHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


async def test_lines_of_one_turn_are_written_together_in_order():
    stream = CountingStream()
    logger = access_logger(stream, "test.access.turn")
    for n in range(3):
        logger.info('{"n":%d}', n)
    assert stream.getvalue() == ""  # not yet: at the start of the next turn
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue() == '{"n":0}\n{"n":1}\n{"n":2}\n'
    assert stream.writes == 1
    logger.info('{"n":3}')
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue().splitlines()[-1] == '{"n":3}'
    assert stream.writes == 2


async def test_flush_writes_what_is_pending():
    """A process that stops (logging.shutdown flushes every handler) loses no line."""
    stream = CountingStream()
    logger = access_logger(stream, "test.access.flush")
    logger.info("last line")
    logger.handlers[0].flush()
    assert stream.getvalue() == "last line\n"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue() == "last line\n"  # the scheduled write finds nothing more


def test_outside_an_event_loop_each_line_is_written_at_once():
    stream = CountingStream()
    logger = access_logger(stream, "test.access.sync")
    logger.info("one")
    assert stream.getvalue() == "one\n"
    logger.info("two")
    assert stream.getvalue() == "one\ntwo\n"
