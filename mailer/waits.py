"""Waiting on an event with a time limit, in a way a cancel always gets through."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True when it is set.

    asyncio.timeout rather than asyncio.wait_for: on Python 3.11, wait_for can swallow a
    cancel that lands just as the inner wait ends, and a task cancelled then never stops."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
