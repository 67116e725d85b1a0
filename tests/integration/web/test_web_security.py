"""Security headers on every answer, the access log (tokens redacted, no address), request
limits, /healthz and /metrics."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support.web import seed
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=1)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


def paths(world):
    ada = world.subscribers[0]
    return [
        ("GET", f"/u/{world.one_click(ada)}"),
        ("POST", f"/u/{world.one_click(ada)}"),
        ("GET", f"/p/{world.preferences(ada)}"),
        ("GET", "/s/acme/news"),
        ("GET", "/u/not-a-token"),
        ("GET", "/nowhere"),
        ("PUT", f"/u/{world.one_click(ada)}"),
        ("GET", "/healthz"),
    ]


async def test_security_headers_on_every_answer(client, world):
    for method, path in paths(world):
        response = await client.request(method, path)
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp, path
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Robots-Tag"].startswith("noindex")
        assert "Set-Cookie" not in headers
        if response.content_type == "text/html":
            page = await response.text()
            assert "<script" not in page and "<style" not in page and "style=" not in page
            assert '<link rel="stylesheet" href="/static/site.css">' in page


async def test_error_pages_are_clear(client):
    response = await client.get("/nowhere")
    assert response.status == 404
    assert "There is nothing at this address" in await response.text()
    response = await client.put("/u/abc")
    assert response.status == 405
    assert response.headers["Allow"]


async def test_stylesheet_is_served(client):
    response = await client.get("/static/site.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    assert "font-family" in await response.text()


async def test_access_log_has_one_line_per_request_without_tokens(client, world, caplog):
    """DESIGN 1: date and time, IP, browser, referrer, object requested, completion status."""
    ada = world.subscribers[0]
    token = world.one_click(ada)
    caplog.set_level(logging.INFO, logger="optout.access")
    await client.post(
        f"/u/{token}?x=1",
        data={"List-Unsubscribe": "One-Click"},
        headers={"User-Agent": "MailProvider/2", "Referer": f"https://mail.example/r/{token}"},
    )
    await client.get(f"/zz/{token}")
    lines = [r.getMessage() for r in caplog.records if r.name == "optout.access"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["path"] == "/u/{token}" and first["status"] == 200
    assert first["method"] == "POST" and first["ua"] == "MailProvider/2"
    assert first["ip"] == "127.0.0.1" and first["time"].endswith("Z") and first["ms"] >= 0
    assert first["referrer"] == "https://mail.example/r/[redacted]"
    assert second["path"] == "/zz/[redacted]" and second["status"] == 404
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in everything
    assert "person0@example.org" not in everything


async def test_access_log_line_is_json_whatever_the_client_sends(client, world, caplog):
    """DESIGN 1: the line is written out by hand for speed; a browser string with quotes,
    backslashes, control characters and non-ASCII letters still reads back exactly, and the
    line is one line."""
    caplog.set_level(logging.INFO, logger="optout.access")
    agent = 'Mail "Client"\\9 \u00e9t\u00e9 \u2603 tab\there'
    await client.get("/healthz", headers={"User-Agent": agent, "Referer": 'https://a.example/"x"'})
    [line] = [r.getMessage() for r in caplog.records if r.name == "optout.access"]
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["ua"] == agent
    assert entry["referrer"] == 'https://a.example/"x"'
    assert entry["path"] == "/healthz" and entry["status"] == 200 and entry["method"] == "GET"
    assert isinstance(entry["ms"], float)


async def test_healthz_and_metrics(client, world):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"database": "ok", "spool_depth": 0}
    ada = world.subscribers[0]
    await client.post(f"/u/{world.one_click(ada)}", data={"List-Unsubscribe": "One-Click"})
    await client.post(f"/u/{world.one_click(ada, 'offers')}", data={"via": "page"})
    await client.get("/u/bad")
    text = await (await client.get("/metrics")).text()
    assert 'optout_http_requests_total{route="unsubscribe",method="POST",status="200"} 2' in text
    assert 'optout_http_requests_total{route="unsubscribe",method="GET",status="400"} 1' in text
    assert 'optout_http_request_seconds_bucket{route="unsubscribe",le="+Inf"} 3' in text
    assert 'optout_unsubscribes_total{channel="one_click"} 1' in text
    assert 'optout_unsubscribes_total{channel="landing_page"} 1' in text
    assert "optout_spool_depth 0" in text


async def test_client_address_behind_a_local_proxy(client, world, caplog):
    """A proxy on this host names the client (X-Forwarded-For); garbage falls back to the peer."""
    caplog.set_level(logging.INFO, logger="optout.access")
    await client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    await client.get("/healthz", headers={"X-Forwarded-For": "not-an-ip"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "optout.access"]
    assert [line["ip"] for line in lines] == ["203.0.113.9", "127.0.0.1"]
