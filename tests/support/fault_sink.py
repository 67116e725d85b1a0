"""An aiosmtpd server that misbehaves on purpose: temporary refusals, hard bounces, dropped
connections and stalls, per recipient, a set number of times before it behaves."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class FaultSink:
    """``faults`` maps a recipient to (kind, times): kind is "rcpt:CODE TEXT",
    "data:CODE TEXT", "drop" or "stall"."""

    faults: dict[str, tuple[str, int]] = field(default_factory=dict)
    mail_faults: list[str] = field(default_factory=list)  # replies to the next MAIL commands
    stall_seconds: float = 3.0
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    port: int = 0

    def _fault(self, rcpt: str, stage: str) -> str | None:
        kind, times = self.faults.get(rcpt, ("", 0))
        if times <= 0 or not kind.startswith(stage):
            return None
        self.faults[rcpt] = (kind, times - 1)
        return kind

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.mail_faults:
            return self.mail_faults.pop(0)
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.attempts[address] += 1
        fault = self._fault(address, "rcpt:")
        if fault:
            return fault.partition(":")[2]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0]
        fault = self._fault(rcpt, "data:")
        if fault:
            return fault.partition(":")[2]
        if self._fault(rcpt, "drop"):
            assert server.transport is not None
            server.transport.close()
            return "250 never seen"
        if self._fault(rcpt, "stall"):
            await asyncio.sleep(self.stall_seconds)
            return "451 4.4.2 too late"
        self.delivered.append((rcpt, bytes(envelope.original_content or b"")))
        self.arrivals.append(time.monotonic())
        return "250 2.0.0 OK"


async def start_fault_sink(sink: FaultSink, **smtp_options: Any) -> asyncio.Server:
    def factory() -> SMTP:
        sink.connections += 1
        return SMTP(sink, hostname="faults.test", **smtp_options)

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    return server
