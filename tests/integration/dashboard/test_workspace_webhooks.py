"""The workspace's webhooks pages (issue 22) as a client's staff use them, through the real app
on real Postgres, delivering to a receiving aiohttp server on loopback: add an endpoint and see
its secret once, send a test event the standardwebhooks library verifies, read the delivery
log, change the endpoint's limits and types, rotate, redeliver, see a refusing endpoint's
failing state, remove; readers see no forms."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator

import pytest
from standardwebhooks.webhooks import Webhook

from mailer.db import rows
from tests.conftest import probes
from tests.support.staff import staff_probes
from tests.support.webhook_receiver import Receiver
from tests.support.workspace import csrf_of, page_of, sign_in, submit
from unsubscribe_web.app import create_app

SECRET = re.compile(r'id="secret" readonly value="(whsec_[^"]+)"')


@pytest.fixture
def loopback_settings(app_settings):
    """The development setting the events tests use: http to a loopback receiver."""
    return dataclasses.replace(
        app_settings,
        events=dataclasses.replace(app_settings.events, allow_http_loopback=True),
    )


@pytest.fixture
async def client(aiohttp_client, loopback_settings):
    return await aiohttp_client(create_app(loopback_settings))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    try:
        yield started
    finally:
        await started.stop()


async def _add(client, cookie, url: str, **fields: str) -> tuple[str, str]:
    """Add an endpoint through the form; the answer page and the secret on it."""
    page = await page_of(client, cookie, "/dashboard/t/acme/webhooks")
    response = await submit(
        client, cookie, "/dashboard/t/acme/webhooks", {"url": url} | fields, csrf_of(page)
    )
    text = await response.text()
    assert response.status == 200, text
    assert response.headers["Cache-Control"] == "no-store"
    found = SECRET.search(text)
    assert found, "no secret on the answer page"
    return text, found.group(1)


def _endpoint_id(text: str) -> int:
    found = re.search(r'/dashboard/t/acme/webhooks/(\d+)"', text)
    assert found
    return int(found.group(1))


async def test_a_client_adds_an_endpoint_sees_the_secret_once_and_a_test_event_arrives_verified(
    client, conn, acme, receiver
):
    cookie = await sign_in(client, acme.tokens["client"])
    answer, secret = await _add(client, cookie, receiver.url)
    endpoint_id = _endpoint_id(answer)
    base = f"/dashboard/t/acme/webhooks/{endpoint_id}"
    listing = await page_of(client, cookie, "/dashboard/t/acme/webhooks")
    page = await page_of(client, cookie, base)
    assert receiver.url in html.unescape(listing) and "Active" in listing
    # Never again: not on the pages, not in the audit log, not in the row.
    audit = " ".join(str(dict(r)) for r in await rows(probes().audit_entries(conn)))
    stored = " ".join(str(dict(r)) for r in await rows(probes().event_endpoint_rows(conn)))
    for text in (listing, page, audit, stored):
        assert secret not in text and secret.removeprefix("whsec_") not in text
    assert "create_event_endpoint" in audit

    sent = await submit(client, cookie, base + "/test", {}, csrf_of(page))
    assert sent.status == 303
    [arrived] = receiver.received
    assert Webhook(secret).verify(arrived.body, arrived.headers)["type"] == "endpoint.test"
    page = await page_of(client, cookie, base)
    log = re.search(r'<table id="delivery-log">(.*?)</table>', page, re.S)
    assert log and "<td>test</td><td>204</td>" in log.group(1)

    # Rotation: a new secret shown once; both sign for 24 hours.
    rotated = await submit(client, cookie, base + "/rotate", {}, csrf_of(page))
    text = await rotated.text()
    new_secret = SECRET.search(text)
    assert rotated.status == 200 and new_secret and new_secret.group(1) != secret
    assert 'id="overlap"' in text
    await submit(client, cookie, base + "/test", {}, csrf_of(page))
    last = receiver.received[-1]
    for either in (secret, new_secret.group(1)):
        assert Webhook(either).verify(last.body, last.headers)["type"] == "endpoint.test"
    page = await page_of(client, cookie, base)
    assert new_secret.group(1) not in page


async def test_settings_change_types_flag_and_limits_and_bad_values_are_refused(
    client, conn, acme, receiver
):
    cookie = await sign_in(client, acme.tokens["admin"])
    answer, _ = await _add(client, cookie, receiver.url, timeout_seconds="3", concurrency="2")
    base = f"/dashboard/t/acme/webhooks/{_endpoint_id(answer)}"
    page = await page_of(client, cookie, base)
    assert "<dd>3 s</dd>" in page and "<dd>2</dd>" in page
    form = {
        "event_types": "subscriber.unsubscribed",
        "include_address": "1",
        "timeout_seconds": "",
        "concurrency": "16",
        "active": "1",
    }
    changed = await submit(client, cookie, base, form, csrf_of(page))
    assert changed.status == 303
    page = await page_of(client, cookie, base + "?done=changed")
    assert "<dd>subscriber.unsubscribed</dd>" in page and "<dd>Included</dd>" in page
    assert "(installation)</dd>" in page and "<dd>16</dd>" in page
    before = [dict(r) for r in await rows(probes().event_endpoint_rows(conn))]
    refused = await submit(client, cookie, base, form | {"timeout_seconds": "31"}, csrf_of(page))
    assert refused.status == 400
    assert "timeout_seconds must be a whole number from 1 to 30" in await refused.text()
    bad_url = await submit(
        client,
        cookie,
        "/dashboard/t/acme/webhooks",
        {"url": "http://crm.example/in"},
        csrf_of(page),
    )
    assert bad_url.status == 400 and "https://" in await bad_url.text()
    assert [dict(r) for r in await rows(probes().event_endpoint_rows(conn))] == before
    # Redeliver since a time: the test event is no event; none queued, but the form works.
    redone = await submit(
        client, cookie, base + "/redeliver", {"since": "2000-01-01T00:00"}, csrf_of(page)
    )
    assert redone.status == 303
    wrong = await submit(client, cookie, base + "/redeliver", {"event_id": "evt_x"}, csrf_of(page))
    assert wrong.status == 400
    # Inactive, then removed.
    await submit(client, cookie, base, form | {"active": ""}, csrf_of(page))
    assert "Inactive" in await page_of(client, cookie, "/dashboard/t/acme/webhooks")
    gone = await submit(client, cookie, base + "/remove", {}, csrf_of(page))
    assert gone.status == 303
    assert 'id="no-endpoints"' in await page_of(client, cookie, "/dashboard/t/acme/webhooks")
    await page_of(client, cookie, base, 404)


async def test_a_refusing_endpoint_shows_failing_and_readers_see_no_forms(
    client, conn, acme, receiver
):
    cookie = await sign_in(client, acme.tokens["client"])
    receiver.status = 500
    answer, _ = await _add(client, cookie, receiver.url)
    endpoint_id = _endpoint_id(answer)
    base = f"/dashboard/t/acme/webhooks/{endpoint_id}"
    page = await page_of(client, cookie, base)
    await submit(client, cookie, base + "/test", {}, csrf_of(page))
    page = await page_of(client, cookie, base)
    assert "<td>test</td><td>500</td>" in page
    await staff_probes().endpoint_failing_for(conn, id=endpoint_id, hours=25)
    listing = await page_of(client, cookie, "/dashboard/t/acme/webhooks")
    assert re.search(r'class="endpoint-state error">Failing since \d{4}-\d\d-\d\d', listing)
    for role in ("marketing", "compliance"):
        reader = await sign_in(client, acme.tokens[role])
        shown = await page_of(client, reader, "/dashboard/t/acme/webhooks")
        assert "Failing since" in shown and 'id="add-endpoint"' not in shown
        one = await page_of(client, reader, base)
        assert (
            'id="delivery-log"' in one
            and '<form method="post" action="/dashboard/t/acme/webhooks' not in one
        )
