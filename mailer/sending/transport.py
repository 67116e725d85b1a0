"""SMTP out: a pool of persistent connections to one relay, and reply classification.

Decisions are made by the reply code alone (RFC 5321 §4.2, STANDARDS 51): 2xx sent, 4xx retry
later, 5xx permanent, except 552 at RCPT, which RFC 5321 §4.5.3.1.10 says to treat as
temporary (STANDARDS 53). A connection that drops, times out or cannot be opened is a retry.
Each connection carries many transactions (STANDARDS 55); after a failed one it sends RSET.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from mailer.config import SmtpRelay, SmtpTimeouts

log = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "permanent"]
Stage = Literal["connect", "mail", "rcpt", "data"]

_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# The message goes out in blocks; each must leave the send buffer within the data-block time.
_BLOCK = 64 * 1024
_DRAIN_POLL = 0.01
_LINE_START_DOT = re.compile(rb"^\.", re.M)
_BARE_LINE_END = re.compile(rb"\r\n|\r|\n")
# The reply text of a delivery refused before MAIL: a non-ASCII address and a relay without
# SMTPUTF8 (RFC 6531 3.4). Never down-converted (RFC 5321 2.4: the local part is sent as is)
# and never retried (the relay's extensions will not change by themselves).
SMTPUTF8_UNSUPPORTED = "smtputf8-unsupported"


@dataclass(frozen=True, slots=True)
class Reply:
    """What became of one transaction."""

    outcome: Outcome
    code: int | None  # None when no reply came (connection lost, timeout)
    text: str
    stage: Stage

    @property
    def status(self) -> str | None:
        """The RFC 3463 enhanced status in the reply text, if the server gave one."""
        match = _ENHANCED.search(self.text)
        if match is None or self.code is None or match.group(1)[0] != str(self.code)[0]:
            return None
        return match.group(1)


def classify(code: int, stage: Stage) -> Outcome:
    """The outcome of a reply code; only the first digit counts for unknown codes."""
    if stage == "rcpt" and code == 552:
        return "retry"
    first = code // 100
    if first == 2:
        return "sent"
    if first == 5:
        return "permanent"
    # 4yz, and anything unexpected (1yz/3yz where a final reply was due): try again later.
    return "retry"


class TlsRequired(aiosmtplib.SMTPException):
    """The relay must speak TLS and did not."""


class _Connection:
    """One SMTP session, opened on first use and reopened after it broke."""

    def __init__(
        self,
        relay: SmtpRelay,
        timeout: float,
        helo: str,
        tls_context: ssl.SSLContext | None,
        timeouts: SmtpTimeouts,
    ) -> None:
        self.relay = relay
        self.timeout = timeout
        self.timeouts = timeouts
        self.helo = helo
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None
        self.transactions = 0

    async def _open(self) -> aiosmtplib.SMTP:
        starttls: bool | None = {"auto": None, "require": True, "off": False}[self.relay.starttls]
        client = aiosmtplib.SMTP(
            hostname=self.relay.host,
            port=self.relay.port,
            use_tls=self.relay.use_tls,
            start_tls=False if self.relay.use_tls else starttls,
            username=self.relay.username,
            password=self.relay.password,
            timeout=self.timeouts.greeting,
            local_hostname=self.helo,
            tls_context=self.tls_context,
        )
        await client.connect()
        # The greeting's time covered connect; EHLO, STARTTLS, AUTH, RSET, QUIT get this one.
        client.timeout = self.timeout
        if (self.relay.use_tls or self.relay.starttls == "require") and not client.is_connected:
            raise TlsRequired("the relay closed the connection")
        if self.relay.starttls == "require" and client.get_transport_info("sslcontext") is None:
            client.close()
            raise TlsRequired("SMTP_URL requires STARTTLS and the relay did not start TLS")
        return client

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        stage: Stage = "connect"
        try:
            if self.client is None or not self.client.is_connected:
                self.client = await self._open()
            client = self.client
            stage = "mail"
            international = not (mail_from.isascii() and rcpt.isascii())
            if international and client.is_ehlo_or_helo_needed:
                await client.ehlo()  # the relay's extensions are known only after EHLO
            if international and not client.supports_extension("smtputf8"):
                return Reply("permanent", None, SMTPUTF8_UNSUPPORTED, stage)
            encoding = "utf-8" if international else "ascii"
            options = ["SMTPUTF8"] if international else None
            await client.mail(
                mail_from, options=options, encoding=encoding, timeout=self.timeouts.mail
            )
            stage = "rcpt"
            await client.rcpt(rcpt, encoding=encoding, timeout=self.timeouts.rcpt)
            stage = "data"
            response = await self._data(client, data)
        except aiosmtplib.SMTPResponseException as exc:
            if stage == "connect":
                self.drop()
                return Reply("retry", exc.code, exc.message, stage)
            await self._reset()
            return Reply(classify(exc.code, stage), exc.code, exc.message, stage)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Dropped, stalled or refused: the session's state is unknown, so start afresh.
            self.drop()
            return Reply("retry", None, f"{type(exc).__name__}: {exc}"[:500], stage)
        except asyncio.CancelledError:
            # Stopped mid-transaction (a drain's deadline): the session is unusable, and a
            # QUIT to a relay that stalled would only stall the stop again.
            self.drop()
            raise
        self.transactions += 1
        return Reply(classify(response.code, "data"), response.code, response.message, "data")

    async def _data(self, client: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
        """DATA with RFC 5321 4.5.3.2's three clocks: the 354, each block, the final reply.

        aiosmtplib's ``data`` has one timeout for all of it, so the stages are run here.
        """
        start = await client.execute_command(b"DATA", timeout=self.timeouts.data_init)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = client.protocol
        transport = getattr(protocol, "transport", None)
        if protocol is None or not isinstance(transport, asyncio.WriteTransport):
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        body = dot_stuffed(data)
        last = max(len(body) - _BLOCK, 0)
        for at in range(0, last, _BLOCK):
            protocol.write(body[at : at + _BLOCK])
            async with asyncio.timeout(self.timeouts.data_block):
                # A transport offers no public "drained" event (aiosmtplib's protocol keeps
                # its flow-control waiter private), so its buffer size is polled.
                while transport.get_write_buffer_size() > _BLOCK:  # noqa: ASYNC110
                    await asyncio.sleep(_DRAIN_POLL)
        # The last block and the reply are awaited together: read_response arms the reader
        # before the loop can deliver the reply, so it cannot be missed.
        protocol.write(body[last:])
        response = await protocol.read_response(timeout=self.timeouts.data_end)
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response

    async def _reset(self) -> None:
        if self.client is None:
            return
        try:
            await self.client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.drop()

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await self.client.quit()
        self.drop()


class SmtpPool:
    """``size`` persistent connections to one relay; ``send`` borrows one for a transaction."""

    def __init__(
        self,
        relay: SmtpRelay,
        *,
        size: int,
        timeout: float,
        helo: str = "localhost",
        tls_context: ssl.SSLContext | None = None,
        timeouts: SmtpTimeouts | None = None,
    ) -> None:
        self.relay = relay
        self.size = size
        stages = timeouts or SmtpTimeouts()
        self._all = [_Connection(relay, timeout, helo, tls_context, stages) for _ in range(size)]
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        for connection in self._all:
            self._idle.put_nowait(connection)

    @property
    def connections_opened(self) -> int:
        return sum(1 for c in self._all if c.client is not None)

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        """One transaction: MAIL FROM, one RCPT TO, DATA with exactly these bytes."""
        connection = await self._idle.get()
        try:
            return await connection.send(mail_from, rcpt, data)
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._all))


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, leading dots doubled (RFC 5321
    4.5.2), ending in CRLF "." CRLF."""
    body = _BARE_LINE_END.sub(b"\r\n", data)
    body = _LINE_START_DOT.sub(b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"
