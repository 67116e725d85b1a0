"""Web limits that hold: every body over 64 KiB is refused (malformed ones too) and changes
nothing; headers and bodies have a time; a slow upload must keep a minimum rate; a client
that drops mid-body is a client abort, not a 500; no body content is ever logged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mailer.config import WebLimits
from tests.conftest import probes
from tests.support.web import seed
from unsubscribe_web.app import MAX_BODY_BYTES, create_app
from unsubscribe_web.limits import server_options

MARKER = b"SECRET-BODY-CONTENT-7f3a"


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=2)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


@contextlib.asynccontextmanager
async def live_server(settings, **limits: float) -> AsyncIterator[int]:
    """The app behind aiohttp's real server, as `optout web` runs it, on a loopback port."""
    settings = dataclasses.replace(settings, web=WebLimits(**limits))
    runner = web.AppRunner(create_app(settings), access_log=None, **server_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not.
    A reset (the server closed while we were still writing) is a close with nothing sent."""
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except ConnectionError:  # reset, or a broken pipe from our own late write
        return b""


BIG = MAX_BODY_BYTES + 1024


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&p=" + b"x" * BIG),
        (
            "multipart/form-data; boundary=zz",
            b'--zz\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            b"One-Click\r\n--zz\r\n" + b"x" * BIG + b"\r\n--zz--\r\n",
        ),
        ("multipart/form-data; boundary=zz", b"--broken" + b"\x00x" * BIG),  # malformed
        ("multipart/form-data", b"no boundary at all" * (BIG // 10)),  # malformed
        ("text/plain", b"y" * BIG),
        ("application/json", b"[" * BIG),
    ],
)
async def test_every_body_over_the_limit_is_refused_and_changes_nothing(
    client, conn, world, content_type, body
):
    """Bodies over 64 KiB get 413 and no change, whatever their type or shape."""
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    response = await client.post(
        f"/u/{world.one_click(ada)}", data=body, headers={"Content-Type": content_type}
    )
    assert response.status == 413
    assert await probes().web_state(conn) == before


async def test_a_50_mb_malformed_multipart_body_streamed_without_length_is_refused(
    settings, conn, world
):
    """The reported case: 50 MB of malformed multipart to a valid /u/ link, sent chunked (no
    Content-Length): 4xx, and nobody is unsubscribed."""
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    async with live_server(settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /u/{world.one_click(ada)} HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: multipart/form-data; boundary=zz\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"--broken\r\n" + b"\xff" * (1024 * 1024)
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await asyncio.wait_for(writer.drain(), 10)
            writer.write(b"0\r\n\r\n")
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
    assert status_line.split()[1] == b"413"
    assert await probes().web_state(conn) == before


async def test_half_sent_headers_are_closed_after_the_header_timeout(settings, world):
    """Slow headers (slowloris): 300 connections that never finish their headers are all
    closed by the header timeout (a setting; half a second here), while a whole request on
    a fresh connection is still served."""
    async with live_server(settings, header_timeout=0.5) as port:
        started = asyncio.get_running_loop().time()
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
        try:
            for _reader, writer in conns:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: a")
            # Keep dripping header bytes: the deadline does not move.
            for _ in range(3):
                await asyncio.sleep(0.2)
                for _reader, writer in conns:
                    with contextlib.suppress(ConnectionError):
                        writer.write(b"a")
            results = await asyncio.gather(*(closed_within(r, 5) for r, _ in conns))
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            for _reader, writer in conns:
                writer.close()
        assert results == [b""] * 300  # closed with no answer
        assert elapsed < 5
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /policy/acme HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = await closed_within(reader, 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 ")


async def test_a_stalled_body_gets_408_after_the_body_timeout_and_changes_nothing(
    settings, conn, world
):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    async with live_server(settings, body_timeout=0.5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /u/{world.one_click(ada)} HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 1000\r\n\r\nList-Unsubscribe=One-Click".encode()
        )
        answer = await closed_within(reader, 5)
        writer.close()
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Request Timeout"
    assert await probes().web_state(conn) == before


async def upload(port: int, path: str, total: int, per_tick: int, tick: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {total}\r\n\r\n".encode()
    )
    body = b"List-Unsubscribe=One-Click&p=".ljust(total, b"x")
    # Read while writing, as a browser does: a server that gives up on the body answers and
    # closes, and a reset from later writes must not swallow its answer.
    answer = asyncio.create_task(read_until_closed(reader))
    with contextlib.suppress(ConnectionError):
        for at in range(0, total, per_tick):
            if answer.done():
                break
            writer.write(body[at : at + per_tick])
            await writer.drain()
            await asyncio.sleep(tick)
    got = await asyncio.wait_for(answer, 10)
    writer.close()
    return got.split(b"\r\n", 1)[0]


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    got = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(4096):
            got += chunk
    return got


async def test_a_body_past_the_body_timeout_must_keep_the_minimum_rate(settings, conn, world):
    """Past the body timeout a body must average the minimum rate (uploads): 60 KB at about
    40 KB/s passes a 20 KB/s minimum, the same at about 8 KB/s is cut off with 408."""
    ada, bob = world.subscribers
    limits = {"body_timeout": 0.5, "upload_min_rate": 20_000.0}
    async with live_server(settings, **limits) as port:
        fast = await upload(port, f"/u/{world.one_click(ada)}", 60_000, 4_000, 0.1)
        slow = await upload(port, f"/u/{world.one_click(bob)}", 60_000, 800, 0.1)
    assert fast == b"HTTP/1.1 200 OK"
    assert slow == b"HTTP/1.1 408 Request Timeout"
    states = {
        s: await probes().subscription_state(conn, subscriber_id=s, topic_id=world.topics["news"])
        for s in (ada, bob)
    }
    assert states == {ada: "unsubscribed", bob: "confirmed"}


async def test_a_client_that_drops_mid_body_is_a_client_abort_not_a_500(
    settings, conn, world, caplog
):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    caplog.set_level(logging.INFO)
    async with live_server(settings) as port:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /u/{world.one_click(ada)} HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 5000\r\n\r\nList-Unsubscribe=One-Click".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        for _ in range(50):
            if any("client aborted" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    aborts = [r for r in caplog.records if "client aborted" in r.getMessage()]
    assert len(aborts) == 1 and aborts[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert await probes().web_state(conn) == before


async def test_an_unreadable_multipart_body_is_logged_without_its_content(
    client, conn, world, caplog
):
    """The opt-out is honoured (RFC 8058 asks for a POST only); the log says the type and
    size, never a byte of the body."""
    ada = world.subscribers[0]
    caplog.set_level(logging.DEBUG)
    response = await client.post(
        f"/u/{world.one_click(ada)}",
        data=b"--not-the-boundary\r\n" + MARKER + b"\r\nList-Unsubscribe=One-Click",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert response.status == 200
    assert (
        await probes().subscription_state(conn, subscriber_id=ada, topic_id=world.topics["news"])
        == "unsubscribed"
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "unreadable multipart body" in logged
    assert MARKER.decode() not in logged and "not-the-boundary" not in logged
