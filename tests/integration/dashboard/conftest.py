"""The workspace tests' world: the app with a relay (never reached) and DKIM required, and two
tenants ready to send (tests/support/workspace.py). test_dashboard.py has its own."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.api_world import sending_settings
from tests.support.workspace import Tenant, ready_tenant
from unsubscribe_web.app import create_app


@pytest.fixture
def app_settings(settings):
    relay = sending_settings(settings)
    return dataclasses.replace(
        relay, mailer=dataclasses.replace(relay.mailer, allow_unsigned=False)
    )


@pytest.fixture
async def client(aiohttp_client, app_settings):
    return await aiohttp_client(create_app(app_settings))


@pytest.fixture
async def acme(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "acme")


@pytest.fixture
async def beta(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "beta")
