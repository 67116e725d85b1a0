"""The campaign worker: claim a batch, check it once more, compose, sign, send, record.

Any number of workers on any number of machines share the outbox through Postgres alone:
claims are ``FOR UPDATE SKIP LOCKED`` with a lease that is renewed while the batch is sent,
expired leases (a killed worker) go back to the queue, and each result is recorded only by
the lease's owner. A batch is never larger than what the relay's shared budget lets this
worker send in half a lease, so a lease does not run out under a live worker.

A lost connection to Postgres never strands a batch: a live worker keeps renewing its leases,
so nothing else would return it. Results of messages already sent are kept in memory and
recorded as soon as Postgres answers again (so they are not sent twice); whatever else the
worker still holds (a claim whose reply was lost, deliveries not sent) is then handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mailer import event_delivery, signin_limits, wording
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.config import Settings, SmtpRelay
from mailer.db import UNAVAILABLE_ERRORS, queries, rows
from mailer.errors import ConfigError, OptoutError
from mailer.i18n import N_, choose, translations
from mailer.limits import purge_expired
from mailer.sending import bounce_policy, compose, staff_mail, tenant_templates
from mailer.sending.campaigns import sender_for, signer_for
from mailer.sending.dkim import DkimSigner
from mailer.sending.relays import (
    SET_ASIDE_AFTER,
    SET_ASIDE_SECONDS,
    RateGate,
    ensure_relay,
    relay_name,
)
from mailer.sending.transport import Reply, SmtpPool
from mailer.tokens import CodeClaims, CodeKind, Keyring, LinkClaims, Purpose, message_id_for
from mailer.waits import wait_for_event

log = logging.getLogger(__name__)

MAINTAIN_EVERY = 3600.0  # seconds between retention runs (mailer/sending/retention.py)

# Subjects of transactional templates when the payload gives none.
# The tenant wording keys that go into mail (mailer.wording); signup_intro is a page's.
MAIL_WORDING = ("greeting", "footer_reason")
TRANSACTIONAL_SUBJECTS = {
    "confirm": N_("Please confirm your subscription"),
}
# A delivery that met no relay budget because Postgres was away goes back after this long.
UNAVAILABLE_RETRY_SECONDS = 1.0
# Ended rate-limit windows (mailer.limits) are deleted this often by the housekeeping.
LIMITS_PURGE_SECONDS = 60.0
# Staff mail batches sent per housekeeping round at most; the rest waits for the next round.
STAFF_MAIL_BATCHES = 5


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for SMTP: the envelope and the exact signed bytes."""

    mail_from: str
    rcpt: str
    data: bytes
    message_id: str


@dataclass(slots=True)
class _CampaignMail:
    prepared: compose.PreparedMessage  # in the tenant's default language
    signer: DkimSigner | None
    tenant_id: int
    topic_id: int
    domain: str
    # The same campaign prepared in each other language its recipients read (the footer and
    # greeting are Optout's words), made on first need: still once per campaign and language.
    remake: Callable[[str], compose.PreparedMessage]
    by_language: dict[str, compose.PreparedMessage] = field(default_factory=dict)

    def prepared_in(self, language: str) -> compose.PreparedMessage:
        found = self.by_language.get(language)
        if found is None:
            found = self.by_language[language] = self.remake(language)
        return found


@dataclass(slots=True)
class _Result:
    row: asyncpg.Record
    state: str  # sent, deferred, failed, bounced, or queued (handed back unsent)
    reply: Reply | None
    message_id: str | None
    delay: float = 0.0
    relay: str | None = None


@dataclass(slots=True)
class _Route:
    """One relay this worker can send through: its connections, its shared budget, its health."""

    name: str
    smtp: SmtpPool
    gate: RateGate
    connect_failures: int = 0  # in a row, in this process
    down_until: float = 0.0  # set aside (monotonic clock) after repeated connect failures
    # Set aside since the last batch was recorded: shared with the other workers at the next
    # record even if the setting aside has run out meanwhile (a slow batch outlives it).
    set_aside_unshared: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    batches: int = 0
    # The last batches' sizes only: a worker runs for months (one entry per batch otherwise).
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))


class Composer:
    """Builds each message; the prepared campaign message and signers are cached per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring: Keyring = settings.keyring()
        self.base = settings.base_url
        self._campaigns: dict[int, _CampaignMail] = {}
        self._signers: dict[int, DkimSigner | None] = {}
        self._tenants: dict[int, asyncpg.Record] = {}
        self._tenant_keys: dict[int, bytes] = {}
        # Each tenant's own wording (greeting, footer reason) per language: mailer.wording.
        self._wording: dict[int, dict[str, dict[str, str]]] = {}

    async def load(self, conn: asyncpg.Connection, batch: Sequence[asyncpg.Record]) -> None:
        """Fetch what the batch needs that is not cached yet (a few queries per campaign)."""
        for row in batch:
            tenant_id = row["tenant_id"]
            if tenant_id not in self._tenants:
                tenant = await queries().tenants.get_tenant(conn, id=tenant_id)
                self._tenants[tenant_id] = tenant
                self._wording[tenant_id] = await wording.by_language(conn, tenant_id)
            campaign_id = row["campaign_id"] or _payload(row).get("campaign_id")
            if campaign_id and campaign_id not in self._campaigns:
                campaign = await queries().campaigns.get_campaign_by_id(conn, id=campaign_id)
                tenant = self._tenants[campaign["tenant_id"]]
                topic = await queries().tenants.get_topic(
                    conn, tenant_id=campaign["tenant_id"], id=campaign["topic_id"]
                )
                remake = functools.partial(
                    _prepare_campaign,
                    campaign,
                    sender_for(tenant, topic, campaign_id),
                    self._wording[tenant["id"]],
                    layout=await tenant_templates.layout_for(conn, campaign),
                )
                default = choose(tenant["default_language"])
                prepared = remake(default)
                self._campaigns[campaign_id] = _CampaignMail(
                    prepared,
                    self.signer(tenant),
                    tenant["id"],
                    topic["id"],
                    tenant["sender_domain"],
                    remake,
                    {default: prepared},
                )

    def signer(self, tenant: asyncpg.Record) -> DkimSigner | None:
        if tenant["id"] not in self._signers:
            self._signers[tenant["id"]] = signer_for(tenant, self.settings)
        return self._signers[tenant["id"]]

    def address_key(self, tenant_id: int, address: str) -> bytes:
        key = self._tenant_keys.get(tenant_id)
        if key is None:
            key = tenant_hash_key(self.settings.hash_key, tenant_id)
            self._tenant_keys[tenant_id] = key
        return suppression_key(key, address)

    def build(self, row: asyncpg.Record) -> Outgoing:
        """The signed message for one claimed delivery."""
        payload = _payload(row)
        campaign_id = row["campaign_id"] or payload.get("campaign_id")
        tenant_id: int = row["tenant_id"]
        if campaign_id:
            mail = self._campaigns[campaign_id]
            subscriber_id = row["subscriber_id"] or 0
            domain = mail.domain
            # Signed (tenant, delivery): a complaint quoting it names this delivery (G7).
            message_id = message_id_for(self.keyring, tenant_id, row["id"], domain)
            ring = self.keyring
            one_click = ring.sign(
                LinkClaims(Purpose.ONE_CLICK, tenant_id, subscriber_id, mail.topic_id)
            )
            prefs = ring.sign(LinkClaims(Purpose.PREFERENCES, tenant_id, subscriber_id))
            code = ring.make_code(
                CodeClaims(CodeKind.UNSUBSCRIBE, (tenant_id, subscriber_id, mail.topic_id))
            )
            # Rows built by hand (preview, bench) may name no language: the tenant's default.
            language = choose(row.get("language"), self._tenants[tenant_id]["default_language"])
            data = mail.prepared_in(language).render(
                compose.Recipient(
                    to_address=row["address"],
                    to_name=row["name"],
                    message_id=message_id,
                    unsubscribe_url=f"{self.base}/u/{one_click}",
                    mailto_unsubscribe=f"unsubscribe+{code}@{domain}",
                    preferences_url=f"{self.base}/p/{prefs}",
                )
            )
            signer = mail.signer
        else:
            tenant = self._tenants[tenant_id]
            domain = tenant["sender_domain"]
            message_id = message_id_for(self.keyring, tenant_id, row["id"], domain)
            # The language is chosen once per message: the one the mail was queued in (the
            # page the person used), else the tenant's default.
            language = choose(payload.get("language"), tenant["default_language"])
            values = {k: v for k, v in payload.items() if k not in ("subject", "language")}
            values |= _tenant_words(self._wording[tenant_id], language, values)
            template = row["template"]
            subject = str(payload.get("subject") or TRANSACTIONAL_SUBJECTS.get(template, template))
            prepared = compose.prepare_transactional(
                template,
                compose.Sender(
                    from_name=tenant["sender_name"],
                    from_address=tenant["sender_address"],
                    domain=domain,
                    postal_address=tenant["postal_address"] or "",
                    list_id="",
                    feedback_id=f"t{row['id']}:{tenant_id}:{template}:optout",
                ),
                # Our own subjects are in the catalogs; a subject queued already translated
                # (the sign-up's) is not a msgid and comes back as it is.
                translations(language).gettext(subject),
                values,
                language=language,
            )
            extra = {k: str(v) for k, v in values.items() if isinstance(v, str | int)}
            data = prepared.render(
                compose.Recipient(
                    to_address=row["address"],
                    to_name=row["name"],
                    message_id=message_id,
                    unsubscribe_url="",
                    mailto_unsubscribe="",
                    preferences_url="",
                    extra=extra,
                )
            )
            signer = self.signer(tenant)
        if signer is not None:
            data = signer.sign(data)
        bounce = self.keyring.make_code(CodeClaims(CodeKind.BOUNCE, (tenant_id, row["id"])))
        return Outgoing(f"bounces+{bounce}@{domain}", row["address"], data, message_id)


def _tenant_words(
    words: dict[str, dict[str, str]], language: str, values: dict[str, Any]
) -> dict[str, str]:
    """The tenant's greeting and footer reason in ``language``, unless the message's own values
    already set them."""
    found = words.get(language, {})
    return {key: found[key] for key in MAIL_WORDING if key in found and key not in values}


def _prepare_campaign(
    campaign: asyncpg.Record,
    sender: compose.Sender,
    words: dict[str, dict[str, str]],
    language: str,
    layout: compose.Layout | None = None,
) -> compose.PreparedMessage:
    content = dict(campaign["content"])
    content |= _tenant_words(words, language, content)
    return compose.prepare(
        campaign["template"],
        sender,
        campaign["subject"],
        content,
        language=language,
        layout=layout,
    )


def _payload(row: asyncpg.Record) -> dict[str, Any]:
    payload = row["payload"]
    if isinstance(payload, str):  # a connection without the jsonb codec
        payload = json.loads(payload)
    return payload or {}


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """One worker process's sending loop (``optout worker``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        smtp: SmtpPool | None = None,
        owner: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        if settings.smtp is None and smtp is None:
            raise ConfigError("SMTP_URL is not set: the worker has no relay to send through")
        self.pool = pool
        self.settings = settings
        self.config = settings.mailer
        relay = smtp.relay if smtp is not None else settings.smtp
        assert relay is not None
        size = concurrency or self.config.pool_size
        pools = [smtp or self._smtp_pool(relay, size)]
        pools += [self._smtp_pool(r, size) for r in self.config.fallbacks]
        # The first relay is used while it works; the others take over when it keeps failing.
        self.routes = [
            _Route(
                relay_name(p.relay),
                p,
                RateGate(
                    self.pool.acquire, self._release, relay_name(p.relay), self.config.per_second
                ),
            )
            for p in pools
        ]
        self.smtp = self.routes[0].smtp
        self.relay = self.routes[0].name
        self.gate = self.routes[0].gate
        self.owner = owner or worker_id()
        # A relay that keeps failing is set aside, but never for longer than the first retry
        # wait: when every relay is away, the retry schedule, not the set-aside, decides when
        # the mail is tried again, so a short schedule resumes as soon as a relay is back.
        self.set_aside_seconds = min(SET_ASIDE_SECONDS, self.config.retry_schedule[0])
        self.composer = Composer(settings)
        # Staff mail is signed with the installation's key: a bad key file stops the start.
        self.staff_signer = staff_mail.installation_signer(settings)
        self.stats = WorkerStats()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._recording: asyncio.Task[None] | None = None
        self._limits_purged_at = float("-inf")
        # Set when Postgres went away mid-batch; cleared once the batch is finished or handed back.
        self._interrupted = False
        self._unrecorded: list[_Result] = []  # sent (or tried), result not yet in Postgres
        self._unsettled: set[int] = set()  # campaigns whose completion check is owed
        self._maintain_at = time.monotonic() + MAINTAIN_EVERY / 60  # not at the very start
        self._maintaining: asyncio.Task[None] | None = None

    def _smtp_pool(self, relay: SmtpRelay, size: int) -> SmtpPool:
        return SmtpPool(
            relay,
            size=size,
            timeout=self.config.smtp_timeout,
            helo=self.config.helo_name,
            timeouts=self.config.smtp_timeouts,
        )

    async def _release(self, conn: asyncpg.Connection) -> None:
        await self.pool.release(conn)

    @property
    def claim_limit(self) -> int:
        """No more than this worker can send in half a lease at the relay's rate."""
        by_rate = int(self.config.per_second * self.config.lease_seconds / 2)
        return max(1, min(self.config.batch_size, by_rate))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Send until stopped (or, with ``until_idle``, until nothing is due)."""
        async with self.pool.acquire() as conn:
            for route in self.routes:
                await ensure_relay(
                    conn,
                    route.name,
                    per_second=self.config.per_second,
                    per_hour=self.config.per_hour,
                )
        listener = await self._listen()
        renewer = asyncio.create_task(self._renew_leases())
        # Event deliveries ride along (issue 22) unless an `optout events run` process has them.
        deliverer = (
            asyncio.create_task(self._deliver_events())
            if self.settings.events.in_worker and not until_idle
            else None
        )
        log.info("worker_started owner=%s relay=%s", self.owner, self.relay)
        try:
            housekeeping_at = 0.0
            while not self._stop.is_set():
                try:
                    if self._interrupted:
                        await self._recover()
                    if time.monotonic() >= housekeeping_at:
                        await self._housekeeping()
                        housekeeping_at = time.monotonic() + min(self.config.poll_seconds, 5.0)
                    claimed = await self.run_once()
                    if not claimed:
                        await self.flush()  # idle: record now (and finish campaigns) first
                except UNAVAILABLE_ERRORS as exc:
                    # Postgres went away: finish or hand back the batch once it answers again.
                    self._interrupted = True
                    log.error("database_unavailable error=%s; retrying", exc)
                    await asyncio.sleep(min(self.config.poll_seconds, 5.0))
                    continue
                if claimed or self._stop.is_set():
                    continue
                if until_idle:
                    break
                self._wake.clear()
                await wait_for_event(self._wake, self.config.poll_seconds)
        finally:
            # Cancelled rather than stopped: the event sender waits on the same stop event.
            self._stop.set()
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await self.flush()
                if self._interrupted:
                    await self._recover()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if deliverer is not None:
                # Its loop ends with the batch in hand (the stop event is shared); a cut one
                # is sent again after its lease.
                done, _ = await asyncio.wait(
                    {deliverer}, timeout=self.settings.events.timeout_seconds + 5
                )
                if not done:
                    deliverer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await deliverer
            if self._maintaining is not None:
                self._maintaining.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._maintaining
            async with self.pool.acquire() as conn:
                await queries().deliveries.release_owner(conn, owner=self.owner)
            if listener is not None:
                await self._unlisten(listener)
            for route in self.routes:
                await route.smtp.close()
            log.info("worker_stopped owner=%s sent=%s", self.owner, self.stats.sent)
        return self.stats

    async def _deliver_events(self) -> None:
        """The event sender of this process (mailer/event_delivery.py) until stopped; a
        failure is logged and retried, it never stops the sending of mail."""
        while not self._stop.is_set():
            try:
                async with event_delivery.Sender(self.pool, self.settings) as sender:
                    await sender.run(self._stop)
            except Exception:
                log.exception("event_delivery_failed; retrying")
                await wait_for_event(self._stop, min(self.config.poll_seconds, 5.0))

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _listen(self) -> asyncpg.Connection | None:
        # LISTEN only wakes an idle worker early; the poll keeps it correct if a NOTIFY is lost.
        try:
            conn: asyncpg.Connection = await self.pool.acquire()
            await conn.add_listener("optout_work", self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("listen_failed error=%s (polling only)", exc)
            return None
        return conn

    async def _unlisten(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.remove_listener("optout_work", self._on_notify)
        await self.pool.release(conn)

    async def _housekeeping(self) -> None:
        from mailer.sending import campaigns, retention

        async with self.pool.acquire() as conn:
            freed = await queries().deliveries.release_expired_leases(conn)
            if freed:
                log.warning("leases_expired count=%s (a worker died or stalled)", freed)
            await campaigns.start_due(conn, self.settings)
            if time.monotonic() - self._limits_purged_at >= LIMITS_PURGE_SECONDS:
                purged = await purge_expired(conn) + await signin_limits.purge_expired(conn)
                self._limits_purged_at = time.monotonic()
                if purged:
                    log.info("rate_limits_purged count=%s", purged)
            # Counter rows are folded often, so statistics reads stay short.
            await retention.compact_counts(conn)
            await staff_mail.report_failing_endpoints(conn, self.settings)
        # Installation mail (invitations, resets, notices, endpoint reports): few and awaited.
        for _ in range(STAFF_MAIL_BATCHES):
            if not await staff_mail.send_due(
                self.pool, self.smtp, self.settings, self.config.retry_schedule, self.staff_signer
            ):
                break
        if time.monotonic() >= self._maintain_at and (
            self._maintaining is None or self._maintaining.done()
        ):
            # Retention runs hourly beside the sending loop, never in its way: one worker at
            # a time (an advisory lock), in short chunked transactions.
            self._maintain_at = time.monotonic() + MAINTAIN_EVERY
            self._maintaining = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        from mailer.sending import retention

        try:
            async with self.pool.acquire() as conn:
                await retention.maintain(conn, now_utc())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("maintenance_failed error=%s", exc)

    async def _renew_leases(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.pool.acquire() as conn:
                    await queries().deliveries.renew_leases(
                        conn, owner=self.owner, lease_seconds=self.config.lease_seconds
                    )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("lease_renewal_failed error=%s", exc)

    async def run_once(self) -> int:
        """One batch: claim, re-check, send, record. Returns how many deliveries it claimed."""
        q = queries().deliveries
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            claimed = await rows(
                q.claim(
                    conn,
                    owner=self.owner,
                    lease_seconds=self.config.lease_seconds,
                    lim=self.claim_limit,
                )
            )
            if not claimed:
                return 0
            self.stats.claimed += len(claimed)
            self.stats.batches += 1
            self.stats.batch_sizes.append(len(claimed))
            batch = [r for r in claimed if r["sendable"]]
            self.stats.suppressed += sum(
                1 for r in claimed if r["fate"] == "claim" and not r["sendable"]
            )
            batch = await self._recheck(conn, batch)
            batch = await self._load(conn, batch)
        prepared_at = time.perf_counter()
        if batch:
            results = await self._send(batch)
            sent_at = time.perf_counter()
            # The results are recorded while the next batch is claimed and sent: the database
            # round trips overlap the SMTP ones. At most one batch waits to be recorded, so a
            # crash duplicates at most that batch and the one in flight.
            await self.flush()
            self._recording = asyncio.create_task(self._record_or_keep(results))
            log.info(
                "batch claimed=%d sending=%d claim_ms=%.0f send_ms=%.0f",
                len(claimed),
                len(batch),
                (prepared_at - started) * 1000,
                (sent_at - prepared_at) * 1000,
            )
        return len(claimed)

    async def flush(self) -> None:
        """Wait until the last batch's results are recorded (or kept, if Postgres is away)."""
        task, self._recording = self._recording, None
        if task is not None:
            await task

    async def _recover(self) -> None:
        """After an outage: record the results kept in memory, settle their campaigns, then hand
        back whatever this worker still holds. Raises while Postgres is still away."""
        await self.flush()
        recorded = len(self._unrecorded)
        if self._unrecorded:
            pending, self._unrecorded = self._unrecorded, []
            try:
                await self._record(pending)
            except UNAVAILABLE_ERRORS:
                self._unrecorded = pending + self._unrecorded
                raise
        async with self.pool.acquire() as conn:
            await self._settle(conn)
            # Nothing of this worker is in flight here (the batch ended, its results are in):
            # what it still leases was claimed by a statement whose reply was lost, or not sent.
            back = await queries().deliveries.release_owner(conn, owner=self.owner)
        self._interrupted = False
        log.warning(
            "worker_recovered owner=%s recorded=%d handed_back=%d", self.owner, recorded, back
        )

    async def _recheck(
        self, conn: asyncpg.Connection, batch: list[asyncpg.Record]
    ) -> list[asyncpg.Record]:
        """The last look at consent and campaign status just before SMTP (STANDARDS 27)."""
        campaign_ids = [r["id"] for r in batch if r["kind"] == "campaign"]
        tx = [r for r in batch if r["kind"] == "transactional"]
        tx_keys = [self.composer.address_key(r["tenant_id"], r["address"]) for r in tx]
        stopped = {
            r["id"]: r["verdict"]
            for r in await rows(
                queries().deliveries.recheck(
                    conn, ids=campaign_ids, tx_ids=[r["id"] for r in tx], tx_keys=tx_keys
                )
            )
        }
        if not stopped:
            return batch
        await queries().deliveries.drop_claims(
            conn, owner=self.owner, ids=list(stopped), states=list(stopped.values())
        )
        self.stats.suppressed += sum(1 for v in stopped.values() if v == "suppressed")
        return [r for r in batch if r["id"] not in stopped]

    async def _load(
        self, conn: asyncpg.Connection, batch: list[asyncpg.Record]
    ) -> list[asyncpg.Record]:
        try:
            await self.composer.load(conn, batch)
            return batch
        except OptoutError as exc:
            # A campaign whose mail cannot be built (key file gone, template broken since it
            # started): pause it with the reason and hand its deliveries back.
            log.error("campaign_cannot_compose error=%s", exc.message)
            ids = [r["id"] for r in batch]
            await queries().deliveries.drop_claims(
                conn, owner=self.owner, ids=ids, states=["queued"] * len(ids)
            )
            for campaign_id in {r["campaign_id"] for r in batch if r["campaign_id"]}:
                await queries().campaigns.auto_pause(
                    conn, id=campaign_id, reason=f"cannot compose: {exc.message}"[:500]
                )
                await queries().campaigns.hold_deliveries(conn, campaign_id=campaign_id)
            return []

    async def _send(self, batch: list[asyncpg.Record]) -> list[_Result]:
        results: list[_Result] = []
        todo = iter(batch)

        async def sender() -> None:
            for row in todo:
                results.append(await self._send_one(row))

        await asyncio.gather(*(sender() for _ in range(self.smtp.size)))
        return results

    async def _send_one(self, row: asyncpg.Record) -> _Result:
        try:
            out = self.composer.build(row)
        except OptoutError as exc:
            log.error("compose_failed delivery=%s error=%s", row["id"], exc.message)
            return _Result(row, "failed", Reply("permanent", None, exc.message, "data"), None)
        reply: Reply | None = None
        wait = max(1.0, self.config.lease_seconds / 2)
        route = via = self.routes[0]
        for route in self._usable_routes():
            try:
                budget = await route.gate.acquire(max_wait=self.config.lease_seconds / 2)
            except UNAVAILABLE_ERRORS as exc:
                # The budget lives in Postgres: nothing is sent without it. Handed back unsent.
                waiting = Reply("retry", None, f"database unavailable: {exc}"[:200], "connect")
                return _Result(row, "queued", waiting, None, UNAVAILABLE_RETRY_SECONDS, route.name)
            if not budget:
                if route.gate.set_aside_for > 0:
                    route.down_until = time.monotonic() + route.gate.set_aside_for
                    wait = max(1.0, min(wait, route.gate.set_aside_for))
                    continue  # another relay may be up
                break
            reply, via = await route.smtp.send(out.mail_from, out.rcpt, out.data), route
            if reply.stage == "connect" and reply.outcome == "retry":
                route.connect_failures += 1
                if route.connect_failures >= SET_ASIDE_AFTER:
                    if route.down_until <= time.monotonic():  # once per setting aside
                        log.warning("relay_set_aside relay=%s error=%s", route.name, reply.text)
                    route.down_until = time.monotonic() + self.set_aside_seconds
                    route.set_aside_unshared = True
                continue  # nothing was sent: the next relay may take it
            route.connect_failures = 0
            break
        if reply is None:
            # No budget in time, or every relay set aside. Not a delivery failure: back to the
            # queue for a while, the attempt not counted.
            waiting = Reply("retry", None, "waiting for a relay's rate budget", "connect")
            return _Result(row, "queued", waiting, None, wait, route.name)
        if reply.outcome == "sent":
            return _Result(row, "sent", reply, out.message_id, relay=via.name)
        if reply.outcome == "retry":
            return _Result(row, "deferred", reply, out.message_id, self._delay(row), via.name)
        # One recipient per transaction, so a 5xx at RCPT or DATA is about this recipient (the
        # bounce policy tells a 5.7.x policy block from a dead address); at MAIL it is ours.
        state = "failed" if reply.stage == "mail" else "bounced"
        return _Result(row, state, reply, out.message_id, relay=via.name)

    def _usable_routes(self) -> list[_Route]:
        """Relays not set aside, in order; all of them when every one is (the first decides)."""
        now = time.monotonic()
        usable = [r for r in self.routes if r.down_until <= now]
        return usable or self.routes[:1]

    def _delay(self, row: asyncpg.Record) -> float:
        schedule = self.config.retry_schedule
        attempt: int = row["attempts"]
        return schedule[min(max(attempt - 1, 0), len(schedule) - 1)]

    async def _record_or_keep(self, results: list[_Result]) -> None:
        """Record; if Postgres went away, keep the results to record when it is back."""
        try:
            await self._record(results)
        except UNAVAILABLE_ERRORS as exc:
            self._unrecorded.extend(results)
            # The record may have committed with its reply lost: then the retry matches no row,
            # so the completion check is owed for these campaigns whatever the retry returns.
            self._unsettled |= {r.row["campaign_id"] for r in results if r.row["campaign_id"]}
            self._interrupted = True
            log.error(
                "record_interrupted results=%d error=%s; kept until Postgres answers",
                len(results),
                exc,
            )

    async def _record(self, results: list[_Result]) -> None:
        """All results of the batch and their bounces in one transaction (so a lost connection
        leaves all or nothing, and the retry repeats nothing), then completion, auto-pause."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                recorded = await self._record_results(conn, results)
            final = {r["id"]: r["state"] for r in recorded}
            for state in final.values():
                if state == "sent":
                    self.stats.sent += 1
                elif state == "deferred":
                    self.stats.deferred += 1
                elif state == "bounced":
                    self.stats.bounced += 1
                elif state == "failed":
                    self.stats.failed += 1
            self._unsettled |= {r["campaign_id"] for r in recorded if r["campaign_id"]}
            for route in self.routes:
                # Shared health: other workers see a relay that keeps failing as set aside.
                if route.set_aside_unshared or route.down_until > time.monotonic():
                    await queries().relays.relay_failed(
                        conn, name=route.name, after=1, seconds=self.set_aside_seconds
                    )
                    route.set_aside_unshared = False
                elif any(r.state == "sent" and r.relay == route.name for r in results):
                    await queries().relays.relay_ok(conn, name=route.name)
            await self._settle(conn)
            troubled = list(
                {r["campaign_id"] for r in recorded if r["campaign_id"] and r["state"] != "sent"}
            )
            if troubled:
                await self._auto_pause(conn, troubled)

    async def _settle(self, conn: asyncpg.Connection) -> None:
        """Mark done the campaigns with nothing left; owed until it runs, even across an outage."""
        if self._unsettled:
            await rows(queries().campaigns.finish_campaigns(conn, ids=list(self._unsettled)))
            self._unsettled.clear()

    async def _record_results(
        self, conn: asyncpg.Connection, results: list[_Result]
    ) -> list[asyncpg.Record]:
        recorded = await rows(
            queries().deliveries.record(
                conn,
                owner=self.owner,
                relays=[r.relay or self.relay for r in results],
                give_up_seconds=self.config.give_up_after,
                ids=[r.row["id"] for r in results],
                states=[r.state for r in results],
                codes=[r.reply.code if r.reply else None for r in results],
                replies=[r.reply.text if r.reply else None for r in results],
                message_ids=[r.message_id for r in results],
                delays=[r.delay for r in results],
            )
        )
        final = {r["id"] for r in recorded}
        for result in results:
            if result.state == "bounced" and result.row["id"] in final:
                await self._bounce(conn, result)
        return recorded

    async def _bounce(self, conn: asyncpg.Connection, result: _Result) -> None:
        row, reply = result.row, result.reply
        assert reply is not None
        decision = await bounce_policy.record_bounce(
            conn,
            tenant_id=row["tenant_id"],
            address_key=self.composer.address_key(row["tenant_id"], row["address"]),
            delivery_id=row["id"],
            status=reply.status,
            permanent=True,
            source="smtp",
            subscriber_id=row["subscriber_id"],
        )
        log.info(
            "smtp_bounce delivery=%s code=%s status=%s action=%s",
            row["id"],
            reply.code,
            reply.status,
            decision.action,
        )

    async def _auto_pause(self, conn: asyncpg.Connection, campaign_ids: list[int]) -> None:
        for row in await rows(queries().campaigns.error_rates(conn, ids=campaign_ids)):
            results, errors = row["results"], row["errors"]
            if results >= self.config.pause_min_attempts and (
                errors / results > self.config.pause_error_rate
            ):
                reason = (
                    f"auto-paused: {errors} of {results} deliveries failed "
                    f"(threshold {self.config.pause_error_rate:.0%})"
                )
                if await queries().campaigns.auto_pause(conn, id=row["campaign_id"], reason=reason):
                    await queries().campaigns.hold_deliveries(conn, campaign_id=row["campaign_id"])
                    log.warning("campaign_auto_paused campaign=%s %s", row["campaign_id"], reason)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
