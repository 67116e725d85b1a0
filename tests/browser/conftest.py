"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`), and
the real app on a real loopback port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from mailer.config import Settings
from unsubscribe_web.app import create_app

# ./dev test installs it there, or where OPTOUT_CHROMIUM says.
CHROMIUM = os.environ.get("OPTOUT_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def web_settings(settings: Settings) -> Settings:
    """Settings whose links (in mail too) point at the test server's loopback port. The
    workspace pages' browser tests sign in with a role's API token, so the upgrade flag
    OPTOUT_TOKEN_SIGNIN is on here; the staff accounts' own browser test signs in by account."""
    port = _free_port()
    return dataclasses.replace(
        settings,
        base_url=f"http://127.0.0.1:{port}",
        staff=dataclasses.replace(settings.staff, token_signin=True),
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings, **app_options: Any) -> AsyncIterator[TestServer]:
    """The real app on the loopback port its ``base_url`` names, until the block ends."""
    port = int(settings.base_url.rsplit(":", 1)[1])
    server = TestServer(create_app(settings, **app_options), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def served_settings(web_settings: Settings) -> Settings:
    """The settings ``server`` runs the app with. A module that needs others (mail to its SMTP
    sink, a sign-in provider) overrides this fixture, never ``server`` itself."""
    return web_settings


@pytest.fixture
async def server(served_settings: Settings) -> AsyncIterator[TestServer]:
    """The app on the loopback port of ``served_settings.base_url``."""
    async with serving(served_settings) as test_server:
        yield test_server


@pytest.fixture
async def web_server(server: TestServer) -> TestServer:
    """The older name of ``server``, kept for the tests that use it."""
    return server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        await context.close()
