"""Staff password hashing yields the CPU (issue 24): a flood of wrong passwords keeps the hash
pool busy, and its Argon2 work must not take the cores the opt-out path needs."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from mailer.passwords import LOWEST_PRIORITY, Hasher


def _nice_values() -> dict[int, int]:
    """Each thread of this process and its nice value (/proc/self/task/*/stat, field 19)."""
    found = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(stat.parent.name)] = int(fields[16])
    return found


async def test_hashes_run_at_the_lowest_cpu_priority_and_the_rest_does_not():
    hasher = Hasher(2)
    try:
        main_thread = threading.get_native_id()
        before = set(_nice_values())  # whatever else runs here (pytest's own threads)
        seen: dict[int, int] = {}
        verifying = asyncio.ensure_future(hasher.verify(None, "a wrong password"))
        deadline = time.monotonic() + 30
        while not verifying.done() and time.monotonic() < deadline:
            seen |= {tid: nice for tid, nice in _nice_values().items() if tid not in before}
            await asyncio.sleep(0.002)
        assert await verifying is False
        # The pool's thread and the lane threads Argon2 starts from it: all at the lowest.
        assert seen and set(seen.values()) == {LOWEST_PRIORITY}, seen
        # The event loop's thread, which answers the opt-outs, keeps its priority.
        assert os.getpriority(os.PRIO_PROCESS, main_thread) == 0
    finally:
        hasher.close()
