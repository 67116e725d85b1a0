"""An SMTP relay on a fixed loopback port that goes away the way relays do: it stalls (takes
connections and answers nothing; sessions already open hang at RCPT), then refuses (nothing
listens on the port), then comes back (a real aiosmtpd server on the same port)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class OutageRelay:
    """``mode`` is "ok", "stall" or "refuse"; ``switch`` moves between them."""

    name: str
    port: int = 0
    mode: str = "ok"
    delivered: list[str] = field(default_factory=list)
    # Per recipient, when a session reached RCPT for it (kept to check the retry schedule).
    tries: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    stalled_connections: int = 0
    _server: asyncio.Server | None = None
    _held: set[asyncio.StreamWriter] = field(default_factory=set)
    _sessions: set[SMTP] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.tries[address].append(time.monotonic())
        # A session opened before the stall hangs here, as on a relay that stopped answering.
        await self._flowing.wait()
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._flowing.wait()
        self.delivered.append(envelope.rcpt_tos[0])
        return "250 2.0.0 OK"

    async def start(self) -> None:
        await self._listen_smtp()
        self.port = self._sockets_port()

    def _sockets_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _listen_smtp(self) -> None:
        def factory() -> SMTP:
            smtp = SMTP(self, hostname=f"{self.name}.test")
            self._sessions.add(smtp)
            return smtp

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, "127.0.0.1", self.port)
        self._flowing.set()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Take the connection, send no greeting: the client's own timeout must end it.
        self.stalled_connections += 1
        self._held.add(writer)
        try:
            with contextlib.suppress(OSError):
                while await reader.read(1024):
                    pass
        finally:
            self._held.discard(writer)
            writer.transport.abort()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _cut_everything(self) -> None:
        for writer in list(self._held):
            writer.transport.abort()
        for smtp in list(self._sessions):
            if isinstance(smtp.transport, asyncio.Transport):
                smtp.transport.abort()
        self._sessions.clear()

    async def switch(self, mode: str) -> None:
        if mode == self.mode:
            return
        if mode == "stall":
            self._flowing.clear()  # open sessions hang
            await self._close_listener()
            self._server = await asyncio.start_server(self._hold, "127.0.0.1", self.port)
        elif mode == "refuse":
            await self._close_listener()
            self._cut_everything()
        elif mode == "ok":
            await self._close_listener()
            self._cut_everything()
            await self._listen_smtp()
        else:
            raise ValueError(mode)
        self.mode = mode

    async def close(self) -> None:
        await self._close_listener()
        self._cut_everything()
        self._flowing.set()
