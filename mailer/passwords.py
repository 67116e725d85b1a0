"""Staff passwords: Argon2id hashes (argon2-cffi's recommended parameters) made in a small thread
pool, so hashing never blocks the event loop and a flood of sign-ins cannot take every core;
and the rules a new password must meet (length, not a common password).

The list of common passwords is the 20,000 entries shipped in Django's wheel
(django/contrib/auth/common-passwords.txt.gz, compiled by Royce Williams; BSD-3-Clause, the
licence is mailer/common-passwords.LICENSE.txt), copied as it is into this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailer.errors import InvalidInput, TooBusy

MIN_LENGTH = 12
MAX_LENGTH = 1024  # more is not a password, and Argon2 would still hash it all
DEFAULT_CONCURRENCY = 2
# Linux's weakest nice value: a hash gets a core only when nothing else wants it.
LOWEST_PRIORITY = 19
_HASHER = PasswordHasher()  # Argon2id, RFC 9106's low-memory recommended parameters


@cache
def common_passwords() -> frozenset[str]:
    data = (files("mailer") / "common-passwords.txt.gz").read_bytes()
    return frozenset(
        line.strip().casefold() for line in gzip.decompress(data).decode().splitlines()
    )


def check_new(password: str) -> None:
    """Refuse a password too short, too long or common (compared case-insensitively)."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(
            f"The password must have at least {MIN_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"The password may have at most {MAX_LENGTH} characters.")
    if password.strip().casefold() in common_passwords():
        raise InvalidInput(
            "That password is on a list of common passwords; choose another.", field="password"
        )


class Hasher:
    """Argon2id in a thread pool of ``concurrency`` threads; a request beyond that many at once
    is refused (TooBusy, a 429) rather than queued, so wrong-password floods cost at most
    ``concurrency`` cores and the rest of the service keeps answering."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self._pool = ThreadPoolExecutor(
            concurrency, thread_name_prefix="argon2", initializer=lowest_priority
        )
        self._slots = concurrency
        self._busy = 0
        # Checked against when the account is unknown, so that answer takes as long.
        self._dummy = _HASHER.hash("not a password of anyone; keeps the timing even")

    def refuse_if_busy(self) -> None:
        """TooBusy now when every hash slot is taken, so a sign-in is refused before any other
        work: a flood's refusals then cost no database round trip."""
        if self._busy >= self._slots:
            raise TooBusy("Too many sign-ins at this moment; try again in a second.")

    async def _run(self, fn: object, *args: str) -> object:
        self.refuse_if_busy()
        self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]
        finally:
            self._busy -= 1

    async def hash(self, password: str) -> str:
        check_new(password)
        result = await self._run(_HASHER.hash, password)
        assert isinstance(result, str)
        return result

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; with no stored hash (unknown account,
        invited account), a dummy hash is checked so the answer takes the same time."""
        if len(password) > MAX_LENGTH:
            password = password[:MAX_LENGTH]
        result = await self._run(_verify, stored or self._dummy, password)
        return bool(result) and stored is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def lowest_priority() -> None:
    """The hash threads' initializer: hashing yields the CPU to everything else (issue 24: a
    flood of wrong passwords must not slow the opt-outs down). Linux nice values are per
    thread, and the threads Argon2 starts for its lanes inherit this one's."""
    with contextlib.suppress(OSError, AttributeError):  # no per-thread priority there
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
