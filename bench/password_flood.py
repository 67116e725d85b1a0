"""A second client for bench.web: posts wrong staff passwords to the sign-in form as fast as it
can, from ever-changing client addresses (X-Forwarded-For, trusted from loopback) and unknown
accounts, so neither the per-IP limit nor the per-account delays spare the server its Argon2
work; only the bounded hash pool (OPTOUT_PASSWORD_HASHES) does. Prints the answers it got.

    .venv/bin/python -m bench.password_flood URL SECONDS
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import aiohttp

CONNECTIONS = 8


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


def main() -> int:
    url, seconds = sys.argv[1], float(sys.argv[2])
    statuses = asyncio.run(flood(url, seconds))
    total = sum(statuses.values())
    print(
        f"wrong-password client: {total} sign-ins in {seconds:.0f} s, "
        + ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
