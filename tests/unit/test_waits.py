"""A task waiting on an event with a time limit stops when cancelled, even when the cancel
lands just as the event is set (asyncio.wait_for on Python 3.11 can swallow that cancel: a
worker stopped by cancellation then kept running)."""

from __future__ import annotations

import asyncio

import pytest

from mailer.waits import wait_for_event


async def test_a_cancel_that_lands_as_the_event_is_set_still_cancels():
    for _ in range(200):
        event = asyncio.Event()
        task = asyncio.create_task(wait_for_event(event, 10))
        await asyncio.sleep(0)  # the task is now waiting on the event
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_it_answers_whether_the_event_was_set():
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 10) is True
