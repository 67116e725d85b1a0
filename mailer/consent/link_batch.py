"""Micro-batches of concurrent one-click POSTs (the web process's ``POST /u/{token}``): each is
queued with a future, and whatever is queued when a batch slot is free runs as ONE statement,
one commit and one journal fsync (writer.unsubscribe_from_links_synced). No timer: a lone
request runs at once; under load the requests that arrive while a batch runs go together in
the next one.

Every answer is given only after the batch's journal lines are fsynced (DESIGN G2). Postgres
away: every request of the batch gets DatabaseUnavailable (its handler spools it). Any other
database error: the batch committed nothing, and its requests are re-run one at a time with
the single statement, so one bad request never fails the others. A request whose client went
away never cancels the batch it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import asyncpg

from mailer.consent import writer as consent
from mailer.consent.writer import Evidence, LinkOptOut
from mailer.db import record_heads
from mailer.errors import DatabaseUnavailable, UnknownTopic
from mailer.journal import Head

log = logging.getLogger(__name__)

# Batches in flight at once: one in Postgres while the web process answers (and journals) the
# one before; more would only queue on Postgres's two cores.
SLOTS = 2
# Requests per statement: past a few hundred the statement's own time, not its round trip,
# is what a request waits for.
CAP = 256
# How long shutdown waits for the batches in flight (their statements and fsyncs).
SHUTDOWN_WAIT = 10.0

Acquire = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


@dataclass(slots=True)
class _Ask:
    opt_out: LinkOptOut
    answer: asyncio.Future[asyncpg.Record]


class OneClickBatcher:
    """Queue of one-click opt-outs, run in batches on connections from ``acquire``."""

    def __init__(self, acquire: Acquire, *, slots: int = SLOTS, cap: int = CAP) -> None:
        self._acquire = acquire
        self._slots = slots
        self._cap = cap
        self._queue: list[_Ask] = []
        self._busy = 0  # slots taken: batches between their start and their answers
        self._running: set[asyncio.Task[None]] = set()
        self._heads: dict[str, Head] = {}  # newest head per journal file, not yet recorded
        self._recorder: asyncio.Task[None] | None = None
        self.batches = 0  # statements run (batches, not their single-statement re-runs)

    async def unsubscribe(
        self,
        *,
        tenant_id: int,
        subscriber_id: int,
        topic_id: int,
        source: str,
        evidence: Evidence,
    ) -> asyncpg.Record:
        """The single statement's answer row for this opt-out, once committed and journalled;
        UnknownTopic when the topic is not the tenant's, DatabaseUnavailable in an outage."""
        answer: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        # A client gone before its answer: nobody reads the future's error, and that is fine.
        answer.add_done_callback(_consume)
        opt_out = LinkOptOut(tenant_id, subscriber_id, topic_id, source, evidence)
        self._queue.append(_Ask(opt_out, answer))
        self._start()
        # shield: a cancelled request leaves its batch (and its own opt-out in it) running.
        return await asyncio.shield(answer)

    def _start(self) -> None:
        while self._queue and self._busy < self._slots:
            batch, self._queue = self._queue[: self._cap], self._queue[self._cap :]
            self._busy += 1
            task = asyncio.create_task(self._run(batch), name="one-click-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _free_slot(self) -> None:
        self._busy -= 1
        self._start()

    async def _run(self, batch: list[_Ask]) -> None:
        heads: list[Head] = []
        try:
            await self._write(batch, heads)
        finally:
            self._free_slot()
        self._record_later(heads)

    def _record_later(self, heads: list[Head]) -> None:
        """After the answers, and with the slot free: the journal head is a record that may
        lag and never moves back, so one recorder records the newest head of each file, and
        batches that finish while it runs share its next round trip instead of one each."""
        for head in heads:
            known = self._heads.get(head.file)
            if known is None or known.last_seq < head.last_seq:
                self._heads[head.file] = head
        if self._heads and (self._recorder is None or self._recorder.done()):
            self._recorder = asyncio.create_task(self._record_heads(), name="journal-heads")

    async def _record_heads(self) -> None:
        while self._heads:
            heads, self._heads = list(self._heads.values()), {}
            await record_heads(heads, self._acquire)

    async def _write(self, batch: list[_Ask], heads: list[Head]) -> None:
        try:
            self.batches += 1
            try:
                answers, synced = await consent.unsubscribe_from_links_synced(
                    self._acquire, [ask.opt_out for ask in batch]
                )
                heads.extend(synced)
            except asyncpg.PostgresError as exc:
                # The statement failed whole (nothing committed, nothing journalled): each
                # request again on its own, so only a bad one fails.
                log.warning(
                    "one-click batch of %d failed (%s): re-running one at a time",
                    len(batch),
                    type(exc).__name__,
                )
                await asyncio.gather(*(self._run_alone(ask) for ask in batch))
                return
            for ask, row in zip(batch, answers, strict=True):
                if row is None:
                    _settle(ask, exc=UnknownTopic(field="topic"))
                else:
                    _settle(ask, row=row)
        except BaseException as exc:  # DatabaseUnavailable, and whatever else: every ask hears
            if not isinstance(exc, DatabaseUnavailable | asyncio.CancelledError):
                log.exception("one-click batch of %d failed", len(batch))
            for ask in batch:
                _settle(ask, exc=exc if isinstance(exc, Exception) else DatabaseUnavailable())
            if not isinstance(exc, Exception):
                raise

    async def _run_alone(self, ask: _Ask) -> None:
        o = ask.opt_out
        try:
            row = await consent.unsubscribe_from_link_pooled(
                self._acquire,
                tenant_id=o.tenant_id,
                subscriber_id=o.subscriber_id,
                topic_id=o.topic_id,
                source=o.source,
                evidence=o.evidence,
            )
        except Exception as exc:
            _settle(ask, exc=exc)
        else:
            _settle(ask, row=row)

    async def idle(self) -> None:
        """Return once every batch started so far is done, its journal head recorded too."""
        while self._running or (self._recorder is not None and not self._recorder.done()):
            waiting = [*self._running, *([self._recorder] if self._recorder else [])]
            await asyncio.gather(*waiting, return_exceptions=True)

    async def close(self) -> None:
        """At shutdown: let the batches in flight finish (their requests are committed or
        not; either way they get their answer), and refuse what is still queued."""
        queued, self._queue = self._queue, []
        for ask in queued:
            _settle(ask, exc=DatabaseUnavailable())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), SHUTDOWN_WAIT)


def _settle(
    ask: _Ask, *, row: asyncpg.Record | None = None, exc: BaseException | None = None
) -> None:
    if ask.answer.done():
        return
    if exc is not None:
        ask.answer.set_exception(exc)
    else:
        ask.answer.set_result(row)


def _consume(answer: asyncio.Future[asyncpg.Record]) -> None:
    if not answer.cancelled():
        answer.exception()
