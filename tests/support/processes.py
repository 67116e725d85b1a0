"""Real `optout` processes for tests: a free loopback port, `optout web` started as a
subprocess that is killed (by its own PID) when the block ends, and `optout serve` with what
it prints."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def web_process(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`optout web` on 127.0.0.1:``port``, yielded once it says it is listening."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailer.cli",
        "web",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"listening on" in line, line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@dataclass
class Served:
    """An `optout serve` subprocess, with what it printed."""

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    def address(self, prefix: str) -> str:
        return next(line.split(prefix, 1)[1] for line in self.stdout if prefix in line)

    @property
    def web_url(self) -> str:
        return self.address("web listening on ").strip()

    @property
    def inbound(self) -> tuple[str, int]:
        host, port = self.address("inbound SMTP listening on ").strip().rsplit(":", 1)
        return host, int(port)

    async def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stdout):
            if self.process.returncode is not None or time.monotonic() > deadline:
                await asyncio.sleep(0.2)  # let the readers catch the last lines
                raise AssertionError(f"no {text!r} line: {self.stdout} {self.stderr[-20:]}")
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, float]:
        """Send ``sig``; returns the exit code and how long the drain took."""
        started = time.monotonic()
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await asyncio.wait_for(asyncio.gather(*self.readers), 5)
        assert self.process.returncode is not None
        return self.process.returncode, time.monotonic() - started


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    # Read continuously: the worker's and access logs must never fill the pipe.
    while line := await stream.readline():
        into.append(line.decode(errors="replace").rstrip("\n"))


async def serve(env: dict[str, str], *args: str) -> Served:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailer.cli",
        "serve",
        "--port",
        "0",
        "--inbound-port",
        "0",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(process)
    served.readers = [
        asyncio.create_task(_collect(process.stdout, served.stdout)),
        asyncio.create_task(_collect(process.stderr, served.stderr)),
    ]
    return served
