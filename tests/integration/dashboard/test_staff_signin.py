"""Staff sign-in limits (issue 24, item 7) through the real app on real Postgres: growing
delays per account and IP that never lock the admin out from elsewhere, an unknown address
answered exactly like a wrong password, and a bounded number of password hashes at once."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time

import pytest

from mailer import signin_limits, staff_accounts
from mailer.config import StaffSettings
from mailer.passwords import Hasher
from mailer.signin_limits import ACCOUNT_CEILING, FIRST_DELAY, FREE_FAILURES, SLOW_SECONDS
from tests.support.api_world import sending_settings
from tests.support.staff import person, staff_probes
from tests.support.web import seed
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.accounts import BUSY_SECONDS

PASSWORD = "correct horse battery staple"
EMAIL = "ada@acme.example"
HOME, AWAY = "198.51.100.7", "203.0.113.9"


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


@pytest.fixture
async def ada(conn):
    world = await seed(conn, subscribers=1, slug="acme")
    await person(
        conn,
        Hasher(),
        email=EMAIL,
        password=PASSWORD,
        role="marketing",
        tenant_id=world.tenant,
        name="Ada",
    )
    return world


async def attempt(client, password: str, ip: str, email: str = EMAIL):
    response = await client.post(
        "/dashboard/login",
        data={"email": email, "password": password},
        headers={"X-Forwarded-For": ip},
        allow_redirects=False,
    )
    client.session.cookie_jar.clear()
    return response


async def test_wrong_passwords_from_one_ip_delay_that_ip_only(client, ada, conn):
    """20 wrong passwords from one address: from the 5th on that address waits (1 minute,
    then doubling); the right password from another address works at once."""
    statuses = [(await attempt(client, "wrong guess number x", AWAY)).status for _ in range(20)]
    assert statuses == [401] * FREE_FAILURES + [429] * (20 - FREE_FAILURES)
    refused = await attempt(client, PASSWORD, AWAY)
    assert refused.status == 429 and "Set-Cookie" not in refused.headers
    assert FIRST_DELAY - 5 <= int(refused.headers["Retry-After"]) <= FIRST_DELAY
    assert "Try again in" in await refused.text()

    at_home = await attempt(client, PASSWORD, HOME)
    assert at_home.status == 303 and "Set-Cookie" in at_home.headers

    # After the wait, one more failure doubles it.
    await staff_probes().end_signin_waits(conn)
    assert (await attempt(client, "wrong guess again", AWAY)).status == 401
    doubled = await attempt(client, PASSWORD, AWAY)
    assert doubled.status == 429
    assert 2 * FIRST_DELAY - 5 <= int(doubled.headers["Retry-After"]) <= 2 * FIRST_DELAY
    # And once waited out, the right password from there works and clears the count.
    await staff_probes().end_signin_waits(conn)
    assert (await attempt(client, PASSWORD, AWAY)).status == 303
    # Only keyed hashes are stored: neither the address nor the IP.
    for row in [r async for r in staff_probes().signin_rows(conn)]:
        assert EMAIL.encode().hex() not in row["subject_hex"]


async def test_an_unknown_address_is_answered_and_limited_like_a_wrong_password(client, ada):
    wrong = await attempt(client, "not the password", AWAY)
    unknown = await attempt(client, "not the password", AWAY, email="nobody@acme.example")
    assert wrong.status == unknown.status == 401
    assert await wrong.text() == await unknown.text()
    statuses = [
        (await attempt(client, "guess", AWAY, email="nobody@acme.example")).status
        for _ in range(FREE_FAILURES)
    ]
    assert statuses == [401] * (FREE_FAILURES - 1) + [429]


async def test_an_unknown_address_takes_as_long_as_a_wrong_password(client, ada):
    """Both check an Argon2 hash (the unknown one a dummy), so the time tells nothing. Each
    probe from its own IP, so no delay interferes; medians against the same-run baseline."""

    async def timed(email: str, n: int) -> float:
        started = time.perf_counter()
        response = await attempt(client, "not the password", f"192.0.2.{n}", email=email)
        assert response.status == 401
        return time.perf_counter() - started

    wrong, unknown = [], []
    for n in range(1, 8):
        wrong.append(await timed(EMAIL, n))
        unknown.append(await timed("nobody@acme.example", 100 + n))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.4 < ratio < 2.5, (wrong, unknown)


async def test_past_the_hourly_ceiling_an_account_is_slowed_never_locked(client, ada, conn):
    assert (await attempt(client, "wrong", AWAY)).status == 401
    await staff_probes().set_account_failures(conn, failures=ACCOUNT_CEILING)
    started = time.perf_counter()
    response = await attempt(client, PASSWORD, HOME)
    assert response.status == 303
    assert time.perf_counter() - started >= SLOW_SECONDS


async def test_password_hashes_beyond_the_pool_answer_429_without_queueing(
    aiohttp_client, settings, ada
):
    """OPTOUT_PASSWORD_HASHES: with one hash at a time, a burst of sign-ins gets 429 for those
    beyond it instead of queueing behind them (the 429 leaves after its Retry-After second, so
    a flood that ignores Retry-After cannot spin on refusals)."""
    one = dataclasses.replace(settings, staff=StaffSettings(password_hashes=1))
    client = await aiohttp_client(create_app(sending_settings(one)))

    async def timed_attempt(n: int):
        started = time.perf_counter()
        response = await attempt(client, "wrong password here", f"192.0.2.{n}")
        return response, time.perf_counter() - started

    burst = await asyncio.gather(*(timed_attempt(n) for n in range(1, 7)))
    statuses = sorted(r.status for r, _ in burst)
    assert 429 in statuses and 401 in statuses
    busy, took = next((r, t) for r, t in burst if r.status == 429)
    assert busy.headers["Retry-After"] == "1"
    # Refused after its Retry-After second: a client ignoring it cannot spin on refusals.
    assert took >= BUSY_SECONDS


async def test_a_reset_link_works_while_sign_ins_are_delayed(client, ada, conn):
    """The person locked out of sign-in by someone else's guesses is not locked out of a
    reset: the link's page is not held up, and the new password works from elsewhere."""
    for _ in range(FREE_FAILURES):
        await attempt(client, "wrong guess", AWAY)
    assert (await attempt(client, PASSWORD, AWAY)).status == 429
    link = await staff_accounts.request_reset(conn, EMAIL, actor="test")
    assert link is not None
    new = "a fresh passphrase for ada"
    done = await client.post(
        link.path(),
        data={"password": new, "password_again": new},
        headers={"X-Forwarded-For": AWAY},
    )
    assert done.status == 200 and "Your password is set" in await done.text()
    assert (await attempt(client, new, HOME)).status == 303
    assert (await attempt(client, PASSWORD, HOME)).status == 401


async def test_the_housekeeping_forgets_failures_that_no_longer_count(client, ada, conn):
    for n in range(3):
        await attempt(client, "wrong", f"192.0.2.{n + 1}", email=f"guess{n}@acme.example")
    assert len([r async for r in staff_probes().signin_rows(conn)]) == 6  # pair + account each
    assert await signin_limits.purge_expired(conn) == 0  # all still count
    await staff_probes().age_signin_failures(conn)
    assert await signin_limits.purge_expired(conn) == 6
    assert [r async for r in staff_probes().signin_rows(conn)] == []
