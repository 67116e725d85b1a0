"""The workspace tests' app: a relay that is never reached, and DKIM required (their tenants
have keys). test_dashboard.py keeps its own plainer client."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.api_world import sending_settings
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
