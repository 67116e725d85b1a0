"""A real SMTP server (aiosmtpd) on a free loopback port that keeps every message it gets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP that logs each MAIL and RCPT command's argument as it came on the wire
    (UTF-8, surrogate-escaped), before any parsing of the address."""

    def __init__(self, sink: SmtpSink, **options: Any) -> None:
        super().__init__(sink, **options)
        self._sink = sink

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._sink.command_lines.append(f"MAIL {arg}")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._sink.command_lines.append(f"RCPT {arg}")
        await super().smtp_RCPT(arg)


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes received after DATA (dot-unstuffed)


@dataclass
class SmtpSink:
    """Handler and record of what arrived; ``reply`` can be set to answer DATA differently."""

    messages: list[CapturedMessage] = field(default_factory=list)
    reply: str = "250 2.0.0 OK"
    connections: int = 0
    command_lines: list[str] = field(default_factory=list)  # "MAIL FROM:<...> ...", "RCPT TO:<...>"
    port: int = 0
    # Messages past this many wait in DATA until release(): a send stops part way, for as long
    # as a test needs to look at it, however fast or slow the machine is.
    held_after: int | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def hold_after(self, count: int) -> None:
        """Answer DATA of any message after the first ``count`` only once release() is called."""
        self.held_after = count
        self._released.clear()

    def release(self) -> None:
        self.held_after = None
        self._released.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.held_after is not None and len(self.messages) >= self.held_after:
            await self._released.wait()
        if not self.reply.startswith("250"):
            return self.reply
        content = envelope.original_content or b""
        message = CapturedMessage(
            envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(content)
        )
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return self.reply

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages arrived (bounded by ``timeout``)."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.messages) >= count), timeout
            )
            return list(self.messages)


async def start_sink(**smtp_options: Any) -> tuple[SmtpSink, asyncio.Server]:
    sink = SmtpSink()

    def factory() -> SMTP:
        sink.connections += 1
        return RecordingSMTP(sink, hostname="sink.test", **smtp_options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    return sink, server
