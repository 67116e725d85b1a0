"""Outgoing requests are an attack surface (issue 22, item 6): names that resolve to private,
shared or metadata addresses are refused at delivery, redirects are not followed, and a name
that rebinds to loopback after a first good answer is refused the second time, with no
connection made to it. DNS is the loopback server of tests/support/dns_server.py."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress

import pytest

from mailer import event_endpoints
from mailer.db import queries, rows
from mailer.errors import InvalidInput
from mailer.event_delivery import Sender
from tests.integration.events.conftest import subscribe
from tests.support.webhook_receiver import Receiver


async def attempts(conn, world, endpoint_id):
    return await event_endpoints.attempt_log(conn, world["tenant"], endpoint_id)


async def one_round(pool, settings):
    async with Sender(pool, settings) as sender:
        await sender.run_once()


class Listener:
    """A bare TCP listener that counts connections and hangs up (no TLS, no HTTP)."""

    def __init__(self) -> None:
        self.connections = 0

    async def start(self, host: str, port: int) -> asyncio.Server:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        return await asyncio.start_server(accept, host, port)


async def test_http_endpoints_are_refused(conn, settings, world):
    with pytest.raises(InvalidInput, match="https"):
        await event_endpoints.create(
            conn, settings, tenant_id=world["tenant"], url="http://crm.example.com/hooks"
        )
    assert await event_endpoints.list_endpoints(conn, world["tenant"]) == []


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("private.hooks.test", "10.0.0.7"),
        ("shared.hooks.test", "100.64.3.4"),
        ("metadata.hooks.test", "169.254.169.254"),
        ("zero.hooks.test", "0.0.0.0"),
    ],
)
async def test_names_resolving_to_unroutable_addresses_are_refused_at_delivery(
    conn, pool, event_settings, dns_zone, world, name, address
):
    dns_zone.a[name] = [address]
    try:
        created = await event_endpoints.create(
            conn, event_settings, tenant_id=world["tenant"], url=f"https://{name}/hooks"
        )
        await subscribe(conn, world, "ada@example.com")
        await one_round(pool, event_settings)
        log = await attempts(conn, world, created.endpoint["id"])
        assert [(row["status"], row["error"]) for row in log] == [(None, "refused_address")]
    finally:
        dns_zone.a.pop(name, None)


async def test_redirects_are_not_followed(conn, pool, event_settings, receiver, world):
    target = await Receiver().start()
    try:
        receiver.redirect_to = target.url
        created = await event_endpoints.create(
            conn, event_settings, tenant_id=world["tenant"], url=receiver.url
        )
        await subscribe(conn, world, "ada@example.com")
        await one_round(pool, event_settings)
        log = await attempts(conn, world, created.endpoint["id"])
        assert [(row["status"], row["error"]) for row in log] == [(302, "redirect")]
        assert len(receiver.received) == 1 and target.received == []
    finally:
        await target.stop()


async def test_a_name_that_rebinds_to_loopback_is_refused_the_second_time(
    conn, pool, event_settings, dns_zone, world
):
    # 127.0.0.2 stands in for a public address: the installation allows it by CIDR.
    allowed = dataclasses.replace(
        event_settings,
        events=dataclasses.replace(
            event_settings.events, allow_cidrs=(ipaddress.ip_network("127.0.0.2/32"),)
        ),
    )
    good, bad = Listener(), Listener()
    first = await good.start("127.0.0.2", 0)
    port = first.sockets[0].getsockname()[1]
    second = await bad.start("127.0.0.1", port)
    name = "rebind.hooks.test"
    dns_zone.a[name] = ["127.0.0.2"]
    try:
        created = await event_endpoints.create(
            conn, allowed, tenant_id=world["tenant"], url=f"https://{name}:{port}/hooks"
        )
        await subscribe(conn, world, "ada@example.com")
        await one_round(pool, allowed)
        assert good.connections == 1  # the first answer was checked and connected to
        dns_zone.a[name] = ["127.0.0.1"]
        await asyncio.sleep(0.1)  # past the backoff
        await one_round(pool, allowed)
        log = await attempts(conn, world, created.endpoint["id"])
        assert log[0]["error"] == "refused_address"  # newest first
        assert log[1]["error"] != "refused_address"
        assert bad.connections == 0
        states = await rows(
            queries().events.delivery_states(
                conn, tenant_id=world["tenant"], endpoint_id=created.endpoint["id"]
            )
        )
        assert [s["state"] for s in states] == ["pending"]  # retried later, never lost
    finally:
        dns_zone.a.pop(name, None)
        for server in (first, second):
            server.close()
            await server.wait_closed()
