"""Web face, inbound SMTP server and sending worker in one event loop (`optout serve`, and the
demo): started together, watched together, drained together on stop.

If one service cannot start, or the worker fails while running, the others are drained and
serve_all raises: no half-running server is left. On stop every service is told at once and
drains concurrently (they share nothing but Postgres, and a stop timeout from systemd, Docker
or Kubernetes is best spent in parallel). Within each service the order is fixed:

- worker: stop claiming; finish sending the batch in hand; record its results; hand back the
  leases of anything claimed but unsent (``release_owner``); close SMTP; then its pool.
  Bounded by one lease (a batch is sized to be sent in half of one); past it the run is
  cancelled, which still releases the leases, and serve_all reports it (ServeFailed).
- web: close the listening socket (new connections are refused); let in-flight requests
  finish (WEB_DRAIN_SECONDS, then aiohttp cancels them); close idle keep-alive connections;
  then the app's cleanup (spool replay, pool).
- inbound: close the listening socket; its pool closes only once the SMTP transactions that
  hold a connection have committed, so a DATA in flight still gets its 250. Sessions still
  open after INBOUND_DRAIN_SECONDS are cut: mail not answered 250 is retried by its sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from mailer.config import Settings
from mailer.db import check_keys_at_start, pool_for
from mailer.errors import ConfigError, ServeFailed
from mailer.inbound.server import running
from mailer.sending.worker import Worker, WorkerStats

__all__ = ["ServeAddresses", "ServeFailed", "ServeOptions", "check_options", "serve_all"]

log = logging.getLogger(__name__)

WEB_DRAIN_SECONDS = 10.0  # in-flight HTTP requests (each is a short transaction)
INBOUND_DRAIN_SECONDS = 10.0  # in-flight SMTP transactions (DATA commits within seconds)
CLOSE_SECONDS = 10.0  # closing pools and connections once the work itself is done
CANCEL_GRACE_SECONDS = 3.0  # a cut-short worker's cleanup: release its leases, drop SMTP


@dataclass(frozen=True)
class ServeOptions:
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    inbound_host: str = "127.0.0.1"
    inbound_port: int | None = 2525  # None: no inbound server
    worker: bool = True  # False: no sending worker
    concurrency: int | None = None
    outbox_dir: Path | None = None  # passed to create_app (dev outbox; demo only)


@dataclass(frozen=True)
class ServeAddresses:
    web_url: str  # e.g. http://127.0.0.1:8080 (the bound port when 0 was asked)
    inbound: tuple[str, int] | None


def check_options(settings: Settings, options: ServeOptions) -> None:
    """Refuse, before anything starts, what cannot work."""
    if options.worker and settings.smtp is None:
        raise ConfigError(
            "SMTP_URL is not set: the worker in `optout serve` sends through it "
            "(set it, or pass --no-worker)"
        )
    if options.concurrency is not None and options.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")


async def serve_all(
    settings: Settings,
    dsn: str,
    options: ServeOptions,
    stop: asyncio.Event,
    ready: Callable[[ServeAddresses], None] | None = None,
) -> None:
    """Start web, inbound and worker; call ``ready``; wait for ``stop``; drain (bounded).

    Raises ServeFailed when a service fails while running (the others are drained first) or
    does not stop within its bound; a service that cannot start stops those already started
    and its error is raised (ConfigError for a port that is taken).
    """
    check_options(settings, options)
    settings = dataclasses.replace(settings, database_url=dsn)
    if not options.worker and options.inbound_port is None:
        # The web face alone starts while Postgres is away (it spools). Otherwise the worker's
        # and the inbound server's pools check the keys (pool_for) before anything listens.
        await check_keys_at_start(settings, dsn, required=False)
    worker = _WorkerService(settings, dsn, options) if options.worker else None
    planned: list[_Service] = [worker] if worker is not None else []
    inbound = None
    if options.inbound_port is not None:
        inbound = _InboundService(settings, dsn, options.inbound_host, options.inbound_port)
        planned.append(inbound)
    site = _WebService(settings, options)
    planned.append(site)

    started: list[_Service] = []
    try:
        for service in planned:
            started.append(service)  # first: a start cut short is cleaned up too
            await service.start()
        if worker is not None:
            worker.launch()  # sends only once every face is up
        if ready is not None:
            ready(ServeAddresses(site.url, inbound.address if inbound is not None else None))
        crashed = await _wait(stop, worker)
    except BaseException:
        # A service that could not start, a failing ``ready``, or this task cancelled: stop
        # whatever runs before the error goes on, so no half-started server is left behind.
        for problem in await _drain(started):
            log.error("serve_stop_incomplete %s", problem)
        raise
    log.info("serve_draining reason=%s", "worker_failed" if crashed else "stop")
    problems = await _drain(started)
    if crashed is not None:
        raise ServeFailed(
            f"the sending worker failed ({type(crashed).__name__}: {crashed}); "
            "web and inbound were stopped"
        ) from crashed
    if problems:
        raise ServeFailed("stopped, but not cleanly: " + "; ".join(problems))


async def _wait(stop: asyncio.Event, worker: _WorkerService | None) -> BaseException | None:
    """Until ``stop`` is set, or the worker ends on its own (a failure: it runs until told to
    stop). Returns the worker's error in that case."""
    stopping = asyncio.create_task(stop.wait(), name="serve-stop")
    watched: set[asyncio.Future[Any]] = {stopping}
    if worker is not None and worker.task is not None:
        watched.add(worker.task)
    try:
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if worker is None or worker.task is None or not worker.task.done():
        return None
    if worker.task.cancelled():
        return RuntimeError("the worker was cancelled")
    error = worker.task.exception()
    log.error("worker_failed; stopping web and inbound", exc_info=error)
    return error or RuntimeError("the worker returned without being told to stop")


async def _drain(services: list[_Service]) -> list[str]:
    """Drain every service at once; returns what did not stop cleanly."""
    results = await asyncio.gather(*(s.drain() for s in services), return_exceptions=True)
    problems = []
    for service, result in zip(services, results, strict=True):
        if isinstance(result, BaseException):
            log.error("serve_drain_failed service=%s", service.name, exc_info=result)
            problems.append(f"{service.name}: {type(result).__name__}: {result}")
        elif result is not None:
            problems.append(f"{service.name}: {result}")
    return problems


class _Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def drain(self) -> str | None:
        """Stop; returns None when clean, else what was left undone."""


class _WebService:
    name = "web"

    def __init__(self, settings: Settings, options: ServeOptions) -> None:
        # Imported here, as in cli_web: the core stays importable without the web stack.
        from unsubscribe_web.app import create_app
        from unsubscribe_web.limits import server_options

        app = create_app(settings, outbox_dir=options.outbox_dir)
        # access_log=None: ours is written by unsubscribe_web.security (optout.access).
        self.runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=WEB_DRAIN_SECONDS, **server_options(settings)
        )
        self.host = options.web_host
        self.port = options.web_port
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, self.host, self.port).start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ConfigError(
                f"the web face cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{_host(str(host))}:{port}"

    async def drain(self) -> str | None:
        if self.runner.server is None:
            return None  # never set up, or already cleaned up after a failed start
        # cleanup(): listener closed, in-flight requests get WEB_DRAIN_SECONDS (then are
        # cancelled), idle keep-alives closed, then the app's cleanup_ctx (spool, pool). A
        # request body still arriving is not read any more (aiohttp): its client retries.
        try:
            await asyncio.wait_for(self.runner.cleanup(), WEB_DRAIN_SECONDS + CLOSE_SECONDS)
        except TimeoutError:
            return f"did not stop within {WEB_DRAIN_SECONDS + CLOSE_SECONDS:.0f} s"
        return None


class _InboundService:
    name = "inbound"

    def __init__(self, settings: Settings, dsn: str, host: str, port: int) -> None:
        self.settings = settings
        self.dsn = dsn
        self.host = host
        self.port = port
        self.stack = contextlib.AsyncExitStack()
        self.server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        context = running(self.settings, self.dsn, self.host, self.port)
        try:
            _handler, server = await self.stack.enter_async_context(context)
        except OSError as exc:  # the pool's errors are DatabaseUnavailable: this is the bind
            raise ConfigError(
                f"the inbound SMTP server cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self.server = server
        bound = server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))

    async def drain(self) -> str | None:
        if self.server is not None:
            self.server.close()  # no new connections from here on
        # Leaving `running`: its chores stop, then its pool closes once the transactions in
        # flight have released their connections (asyncpg's close waits for them). From
        # Python 3.12 it first waits for every session to disconnect, idle ones included.
        leaving = asyncio.create_task(self.stack.aclose(), name="serve-inbound-close")
        done, _ = await asyncio.wait({leaving}, timeout=INBOUND_DRAIN_SECONDS)
        if not done:
            # Nothing is lost by cutting the sessions left: mail not yet answered 250 is
            # retried by its sender, and a retry is applied once.
            log.warning("inbound_sessions_open after=%.0fs; closing them", INBOUND_DRAIN_SECONDS)
            close_clients = getattr(self.server, "close_clients", None)  # Python 3.13+
            if close_clients is not None:
                close_clients()
            else:
                leaving.cancel()
            done, _ = await asyncio.wait({leaving}, timeout=CLOSE_SECONDS)
            if not done:
                leaving.cancel()
                return f"did not close within {INBOUND_DRAIN_SECONDS + CLOSE_SECONDS:.0f} s"
        if not leaving.cancelled():
            leaving.result()  # an error while closing is reported by _drain
        return None


class _WorkerService:
    name = "worker"

    def __init__(self, settings: Settings, dsn: str, options: ServeOptions) -> None:
        self.settings = settings
        self.dsn = dsn
        self.concurrency = options.concurrency
        self.stack = contextlib.AsyncExitStack()
        self.worker: Worker | None = None
        self.task: asyncio.Task[WorkerStats] | None = None
        # A batch is sized to be sent in half a lease; past a whole lease its claims would
        # expire and be taken by another worker anyway, so waiting longer buys nothing.
        self.bound = max(settings.mailer.lease_seconds, 5.0)

    async def start(self) -> None:
        pool = await self.stack.enter_async_context(pool_for(self.settings, self.dsn))
        try:
            self.worker = Worker(pool, self.settings, concurrency=self.concurrency)
        except BaseException:
            await self.stack.aclose()
            raise

    def launch(self) -> None:
        assert self.worker is not None
        self.task = asyncio.create_task(self.worker.run(), name="serve-worker")

    async def drain(self) -> str | None:
        problem = None
        task = self.task
        if task is not None and not task.done():
            assert self.worker is not None
            self.worker.stop()  # no new claims; the batch in hand is sent and recorded
            done, _ = await asyncio.wait({task}, timeout=self.bound)
            if not done:
                problem = (
                    f"its batch was not sent within {self.bound:.0f} s and was cut short; the "
                    "unrecorded messages were handed back to the queue and may be sent again"
                )
                # Cancelling still runs run()'s cleanup: record the last batch, release the
                # leases (first), close SMTP. A second cancel cuts a cleanup step that waits
                # on the network in turn.
                for _ in range(2):
                    task.cancel()
                    done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
                    if done:
                        break
            if not task.done():
                problem = f"{problem}; its cleanup did not finish (leases expire on their own)"
            elif not task.cancelled() and task.exception() is not None:
                error = task.exception()
                problem = f"failed while stopping: {type(error).__name__}: {error}"
                log.error("worker_stop_failed", exc_info=error)
            elif not task.cancelled():
                stats = task.result()
                log.info("worker_drained sent=%s deferred=%s", stats.sent, stats.deferred)
        try:
            await asyncio.wait_for(self.stack.aclose(), CLOSE_SECONDS)
        except TimeoutError:
            problem = problem or f"its pool did not close within {CLOSE_SECONDS:.0f} s"
        return problem


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
