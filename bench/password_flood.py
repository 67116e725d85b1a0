"""A second client for bench.web: posts wrong staff passwords to the sign-in form as fast as it
can, from ever-changing client addresses (X-Forwarded-For, trusted from loopback) and unknown
accounts, so neither the per-IP limit nor the per-account delays spare the server its Argon2
work; only the bounded hash pool (OPTOUT_PASSWORD_HASHES) does. Prints the answers it got.

    .venv/bin/python -m bench.password_flood URL SECONDS [EMAIL PASSWORD]

With EMAIL and PASSWORD (a real staff account), that account also signs in with its right
password halfway through, from its own address, as a person would: a 429 is tried again after
its Retry-After, for at most RIGHT_SIGNIN_LIMIT seconds. The time until it was in is printed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import aiohttp

CONNECTIONS = 8
RIGHT_SIGNIN_LIMIT = 60.0  # seconds the right password may take to get in before we give up
RIGHT_SIGNIN_IP = "192.0.2.10"


async def flood(url: str, seconds: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    sequence = iter(range(10**9))

    async def one_client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            n = next(sequence)
            ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            data = {"email": f"guess{n}@bench.example", "password": f"wrong password {n}"}
            async with session.post(
                f"{url}/dashboard/login",
                data=data,
                headers={"X-Forwarded-For": ip},
                allow_redirects=False,
            ) as response:
                await response.read()
                statuses[response.status] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one_client(session) for _ in range(CONNECTIONS)))
    return statuses


async def right_signin(url: str, email: str, password: str, after: float) -> float | None:
    """Seconds until the right password got in (a session cookie), or None."""
    await asyncio.sleep(after)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < RIGHT_SIGNIN_LIMIT:
            async with session.post(
                f"{url}/dashboard/login",
                data={"email": email, "password": password},
                headers={"X-Forwarded-For": RIGHT_SIGNIN_IP},
                allow_redirects=False,
            ) as response:
                await response.read()
                if response.status < 400 and "Set-Cookie" in response.headers:
                    return time.monotonic() - started  # a session: signed in
                if response.status != 429:
                    return None
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    return None


async def flood_and_sign_in(
    url: str, seconds: float, account: tuple[str, str] | None
) -> tuple[Counter[int], float | None]:
    signing_in = (
        asyncio.ensure_future(right_signin(url, *account, after=seconds / 2)) if account else None
    )
    statuses = await flood(url, seconds)
    return statuses, (await signing_in if signing_in is not None else None)


def main() -> int:
    url, seconds = sys.argv[1], float(sys.argv[2])
    account = (sys.argv[3], sys.argv[4]) if len(sys.argv) >= 5 else None
    statuses, took = asyncio.run(flood_and_sign_in(url, seconds, account))
    total = sum(statuses.values())
    print(
        f"wrong-password client: {total} sign-ins in {seconds:.0f} s, "
        + ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())),
        flush=True,
    )
    if account is not None:
        print(
            "right password meanwhile: "
            + (f"signed in after {took:.2f} s" if took is not None else "NOT signed in")
            + f" (limit {RIGHT_SIGNIN_LIMIT:.0f} s)",
            flush=True,
        )
    return 0 if account is None or took is not None else 1


if __name__ == "__main__":
    sys.exit(main())
