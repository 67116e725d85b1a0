"""Delivery of events to tenants' endpoints (issue 22): signed per Standard Webhooks
(STANDARDS 63), at least once, in order per subscriber, retried with backoff until the retry
window closes, then abandoned (the event stays in the feed; staff can redeliver).

Any number of processes may run ``run`` side by side (the worker, ``serve``, ``optout events
run``): deliveries are claimed with SKIP LOCKED and a lease, so one a killed process held is
sent again after the lease; receivers dedupe by the ``webhook-id`` header, which is the
event's id on every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from mailer import event_endpoints, events, outgoing, secret_box
from mailer.config import Settings
from mailer.db import UNAVAILABLE_ERRORS, queries, rows
from mailer.waits import wait_for_event

log = logging.getLogger(__name__)

USER_AGENT = "Optout-Webhooks/1"
MAX_BACKOFF_SECONDS = 3600.0


def sign(msg_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``
    for each secret, space-separated (two during a rotation)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1,"
        + base64.b64encode(
            hmac.new(secret_box.secret_bytes(s), signed, hashlib.sha256).digest()
        ).decode()
        for s in secrets_
    )


def headers(msg_id: str, body: bytes, secrets_: Sequence[str], now: float) -> dict[str, str]:
    timestamp = int(now)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secrets_),
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def backoff(attempts: int, first: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, at most an hour."""
    return float(min(first * 2 ** max(0, attempts - 1), MAX_BACKOFF_SECONDS))


@dataclass(slots=True)
class _Endpoint:
    id: int
    tenant_id: int
    url: str
    include_address: bool
    active: bool
    secrets: list[str]
    timeout: float
    concurrency: int


async def load_endpoint(
    conn: asyncpg.Connection, settings: Settings, endpoint_id: int
) -> _Endpoint | None:
    """An endpoint with its secrets unsealed (the current one, and the old one while a
    rotation's 24 hours run)."""
    row = await queries().events.endpoint_secrets(conn, id=endpoint_id)
    if row is None:
        return None
    key, label = settings.hash_key, event_endpoints.label(endpoint_id)
    timeout, concurrency = event_endpoints.effective_limits(row, settings)
    sealed = [row["secret_sealed"]] + (
        [row["old_secret_sealed"]] if row["old_secret_sealed"] is not None else []
    )
    return _Endpoint(
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        include_address=row["include_address"],
        active=row["active"],
        secrets=[secret_box.unseal(key, s, label) for s in sealed],
        timeout=timeout,
        concurrency=concurrency,
    )


@dataclass(slots=True)
class Sender:
    """One process's delivery loop: a guarded client session, a semaphore per endpoint sized
    by the endpoint's concurrency (a new one when staff change the limit)."""

    pool: asyncpg.Pool
    settings: Settings
    client: aiohttp.ClientSession | None = None
    _limits: dict[int, tuple[int, asyncio.Semaphore]] = field(default_factory=dict)

    async def __aenter__(self) -> Sender:
        self.client = outgoing.session(event_endpoints.guard(self.settings))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; idle, it polls every OPTOUT_EVENTS_POLL."""
        poll = self.settings.events.poll_seconds
        while not stop.is_set():
            try:
                sent = await self.drain(stop)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("events: database unavailable (%s); retrying", type(exc).__name__)
                sent = 0
            if sent == 0:
                await wait_for_event(stop, poll)

    async def run_once(self) -> int:
        """Claim one batch, send it, record the outcomes; how many were attempted."""
        batch = await self._claim()
        if batch is None:
            return 0
        return await self._finish(await self._send(batch))

    async def drain(self, stop: asyncio.Event | None = None, max_batches: int = 1_000_000) -> int:
        """Deliver batch after batch until nothing is due (or ``stop``); how many were
        attempted. Pipelined: the next batch is claimed while one is being sent, and a sent
        batch is recorded while the next is sent, so Postgres and the receivers work at the
        same time. Order per subscriber still holds: a claim skips every delivery with an
        earlier pending one, and a claimed batch stays pending until it is recorded."""
        total = 0
        recording: asyncio.Task[int] | None = None
        batch = await self._claim()
        try:
            for _ in range(max_batches):
                if batch is None or (stop is not None and stop.is_set()):
                    break
                sending = asyncio.create_task(self._send(batch))
                try:
                    upcoming = await self._claim()
                finally:
                    results = await sending
                if recording is not None:
                    total += await recording
                recording = asyncio.create_task(self._finish(results))
                if upcoming is None:
                    # What was held back behind the batch just sent may be due once it is
                    # recorded.
                    total += await recording
                    recording = None
                    upcoming = await self._claim()
                batch = upcoming
        finally:
            if recording is not None:
                total += await recording
        return total

    async def _claim(self) -> _Batch | None:
        """Claim due deliveries and read what they need: events, endpoints, secrets."""
        cfg = self.settings.events
        q = queries().events
        async with self.pool.acquire() as conn:
            claimed = await rows(
                q.claim_deliveries(conn, lease_seconds=cfg.lease_seconds, lim=cfg.batch_size)
            )
            if not claimed:
                return None
            payloads = {
                r["id"]: r
                for r in await rows(
                    q.delivery_payloads(conn, event_ids=sorted({c["event_id"] for c in claimed}))
                )
            }
            endpoints = {
                i: await load_endpoint(conn, self.settings, i)
                for i in {c["endpoint_id"] for c in claimed}
            }
        return _Batch(claimed, payloads, endpoints)

    async def _send(self, batch: _Batch) -> list[_Result]:
        return list(
            await asyncio.gather(
                *(
                    self._deliver(
                        c, batch.payloads.get(c["event_id"]), batch.endpoints[c["endpoint_id"]]
                    )
                    for c in batch.claimed
                )
            )
        )

    async def _finish(self, results: list[_Result]) -> int:
        async with self.pool.acquire() as conn:
            await queries().events.finish_deliveries(
                conn,
                endpoint_ids=[r.endpoint_id for r in results],
                event_ids=[r.event_id for r in results],
                tenant_ids=[r.tenant_id for r in results],
                outcomes=[r.outcome for r in results],
                next_ats=[r.next_at for r in results],
                statuses=[r.status for r in results],
                latencies=[r.latency_ms for r in results],
                errors=[r.error for r in results],
            )
        return len(results)

    def _semaphore(self, endpoint: _Endpoint) -> asyncio.Semaphore:
        # A changed limit gets a new semaphore; requests under the old one finish under it.
        held = self._limits.get(endpoint.id)
        if held is None or held[0] != endpoint.concurrency:
            held = (endpoint.concurrency, asyncio.Semaphore(endpoint.concurrency))
            self._limits[endpoint.id] = held
        return held[1]

    async def _deliver(
        self,
        claim: asyncpg.Record,
        event: asyncpg.Record | None,
        endpoint: _Endpoint | None,
    ) -> _Result:
        result = _Result(claim["endpoint_id"], claim["event_id"], 0)
        if event is None or endpoint is None:
            result.outcome, result.error = "abandoned", "gone"
            return result
        result.tenant_id = endpoint.tenant_id
        if not endpoint.active:
            result.outcome, result.error = "abandoned", "endpoint_inactive"
            return result
        email = event["email"] if endpoint.include_address else None
        body = encode(events.payload(event, email=email))
        limit = self._semaphore(endpoint)
        assert self.client is not None
        async with limit:
            started = time.monotonic()
            answer = await outgoing.post(
                self.client,
                endpoint.url,
                body,
                headers(events.event_id_text(event["id"]), body, endpoint.secrets, time.time()),
                timeout=endpoint.timeout,
            )
        result.latency_ms = int((time.monotonic() - started) * 1000)
        result.status, result.error = answer.status, answer.error
        if answer.error is None:
            result.outcome = "delivered"
            return result
        now = dt.datetime.now(dt.UTC)
        deadline = claim["created_at"] + dt.timedelta(
            seconds=self.settings.events.retry_for_seconds
        )
        if now >= deadline:
            result.outcome = "abandoned"
        else:
            wait = backoff(claim["attempts"], self.settings.events.backoff_seconds)
            result.outcome = "retry"
            result.next_at = min(now + dt.timedelta(seconds=wait), deadline)
        return result


@dataclass(frozen=True, slots=True)
class _Batch:
    claimed: list[asyncpg.Record]
    payloads: dict[int, asyncpg.Record]
    endpoints: dict[int, _Endpoint | None]


@dataclass(slots=True)
class _Result:
    endpoint_id: int
    event_id: int
    tenant_id: int
    outcome: str = "retry"
    next_at: dt.datetime | None = None
    status: int | None = None
    latency_ms: int | None = None
    error: str | None = None


async def send_test(
    conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, endpoint_id: int
) -> dict[str, Any]:
    """Send one signed ``endpoint.test`` event now (not stored, not retried); the attempt is
    logged like any other. Returns status, latency and error class."""
    await event_endpoints.get(conn, tenant_id, endpoint_id)
    endpoint = await load_endpoint(conn, settings, endpoint_id)
    assert endpoint is not None
    msg_id = f"evt_test_{secrets.token_hex(8)}"
    body = encode(
        {
            "id": msg_id,
            "type": "endpoint.test",
            "version": 1,
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "tenant_id": tenant_id,
            "data": {},
        }
    )
    started = time.monotonic()
    async with outgoing.session(event_endpoints.guard(settings), limit=1) as client:
        answer = await outgoing.post(
            client,
            endpoint.url,
            body,
            headers(msg_id, body, endpoint.secrets, time.time()),
            timeout=endpoint.timeout,
        )
    latency = int((time.monotonic() - started) * 1000)
    await queries().events.log_test_attempt(
        conn,
        endpoint_id=endpoint_id,
        tenant_id=tenant_id,
        status=answer.status,
        latency_ms=latency,
        error=answer.error,
    )
    return {"status": answer.status, "latency_ms": latency, "error": answer.error}
