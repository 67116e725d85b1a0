"""Real `optout` processes for tests: a free loopback port, and `optout web` started as a
subprocess that is killed (by its own PID) when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator


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
