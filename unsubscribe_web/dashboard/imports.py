"""The workspace's import and suppression-list pages (issue 17): upload a CSV of subscribers
in the browser (streamed to the uploads folder through the API's path and size limit, the
lawful basis from the closed list), watch the import's rows read and rejected while it runs
(the campaign page's polling script), download the per-row error report (formula-safe CSV);
upload a suppression list, download the tenant's suppressions.

The import runs on after the upload's request, on a pool connection of its own, so the page
can show it running; mailer.consent.imports does the work and its audit lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import BodyPartReader, web

from mailer import tenants
from mailer.api_tokens import Principal
from mailer.config import Settings
from mailer.consent import imports, suppression_lists
from mailer.csv_safe import csv_text
from mailer.errors import InvalidInput, NotFound, OptoutError
from unsubscribe_web import uploads
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.dashboard.workspace import (
    Workspace,
    opened,
    posted,
    see_other,
    uploaded,
)
from unsubscribe_web.keys import IMPORT_TASKS, POOL, SETTINGS

log = logging.getLogger(__name__)

BASE = "/dashboard/t/{tenant}/imports"
ONE = BASE + "/{import_id}"
SUPPRESSIONS = "/dashboard/t/{tenant}/suppressions"
PAGE_SIZE = 50
ERROR_PAGE = 1000
# How long the upload's request waits for the import to begin before showing the list.
START_SECONDS = 10.0
ENDED = ("done", "failed")
REASONS = tuple(suppression_lists.REASON_SCOPES)
COUNTS = ("added", "already", "bad")
NOTICES = {"started": "Import started: the figures below update while it runs."}


def add_routes(app: web.Application) -> None:
    app[IMPORT_TASKS] = set()
    app.on_shutdown.append(_cancel_imports)
    app.router.add_get(BASE, list_page, name="ws_imports")
    app.router.add_post(BASE, upload, name="ws_import_create")
    app.router.add_get(ONE, import_page, name="ws_import")
    app.router.add_get(ONE + "/progress.json", progress, name="ws_import_progress")
    app.router.add_get(ONE + "/errors.csv", error_report, name="ws_import_errors")
    app.router.add_get(SUPPRESSIONS, suppressions_page, name="ws_suppressions")
    app.router.add_post(SUPPRESSIONS, upload_suppressions, name="ws_suppressions_import")
    app.router.add_post(
        SUPPRESSIONS + "/export", export_suppressions, name="ws_suppressions_export"
    )


# --- imports ------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    """GET: the upload form and the imports, newest first (``?before=ID`` pages by keyset)."""
    async with opened(request, "list_imports") as ws:
        return await _list(ws)


async def _list(
    ws: Workspace,
    *,
    error: OptoutError | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    before = path_id(ws.request.query.get("before", "")) or 2**63 - 1
    found = await imports.list_imports(ws.conn, ws.tenant_id, before_id=before, limit=PAGE_SIZE)
    more = len(found) == PAGE_SIZE
    return ws.page(
        "workspace/imports.html",
        status=status,
        imports=found,
        topics=await tenants.list_topics(ws.conn, ws.tenant_id),
        bases=imports.LAWFUL_BASES,
        values=values or {},
        error=error,
        limit_mib=uploads.MAX_UPLOAD_BYTES // (1024 * 1024),
        next_url=ws.url("ws_imports", {"before": str(found[-1]["id"])}) if more else None,
    )


async def upload(request: web.Request) -> web.Response:
    """POST (multipart): the options, checked before the file is read; the file, streamed to
    the uploads folder; then the import starts and its page opens."""
    async with uploaded(request, "create_import") as (ws, fields, file_part):
        try:
            topic = await tenants.get_topic(ws.conn, ws.tenant_id, fields.get("topic", ""))
            options = imports.ImportOptions(
                lawful_basis=fields.get("lawful_basis", ""),
                source=fields.get("source", ""),
                age_attested=fields.get("age_attested") == "yes",
                existing_consent=fields.get("existing_consent") == "yes",
                evidence=fields.get("evidence") or None,
            ).checked()
            if file_part is None:
                raise InvalidInput("Choose a CSV file to import.", field="file")
            filename = Path(file_part.filename or "upload.csv").name[:200] or "upload.csv"
            path = await uploads.spool(_chunks(file_part), ws.request.app[SETTINGS])
            import_id = await _start(ws, topic["id"], path, options, filename)
        except OptoutError as exc:
            return await _list(ws, error=exc, values=fields, status=400)
        if import_id is None:
            return see_other(ws.url("ws_imports"))
        target = ws.url("ws_import", {"done": "started"}, import_id=import_id)
    return see_other(target)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(uploads.UPLOAD_CHUNK):
        yield chunk


async def _start(
    ws: Workspace, topic_id: int, path: Path, options: imports.ImportOptions, filename: str
) -> int | None:
    """Start the import in the background; its id once its row exists (None: still reading
    a large file after START_SECONDS: the list shows it soon). A refusal before the import
    began (a bad header, say) is raised here, so the form shows it."""
    app = ws.request.app
    began: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def started(import_id: int) -> None:
        if not began.done():
            began.set_result(import_id)

    task = asyncio.create_task(
        _run(
            app[POOL],
            app[SETTINGS],
            ws.tenant_id,
            topic_id,
            path,
            options,
            filename,
            ws.principal,
            started,
        )
    )
    app[IMPORT_TASKS].add(task)
    task.add_done_callback(_finished)
    waiters: set[asyncio.Future[Any]] = {task, began}
    await asyncio.wait(waiters, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if began.done():
        return began.result()
    began.cancel()
    if task.done():
        summary: dict[str, Any] = task.result()  # raises the refusal
        found: int = summary["id"]
        return found
    return None


async def _run(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant_id: int,
    topic_id: int,
    path: Path,
    options: imports.ImportOptions,
    filename: str,
    principal: Principal,
    started: Callable[[int], None],
) -> dict[str, Any]:
    try:
        async with pool.acquire() as conn:
            return await imports.run_import(
                conn,
                settings,
                tenant_id=tenant_id,
                topic_id=topic_id,
                path=path,
                options=options,
                filename=filename,
                actor=principal.actor,
                token_id=principal.token_id,
                started=started,
            )
    finally:
        uploads.discard(path)


def _finished(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, OptoutError):
        log.error("workspace import failed", exc_info=error)


async def _cancel_imports(app: web.Application) -> None:
    """At shutdown: stop running imports (each resumes when its file is uploaded again)."""
    tasks: set[asyncio.Task[Any]] = app[IMPORT_TASKS]
    running = list(tasks)
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def import_page(request: web.Request) -> web.Response:
    """GET: one import: rows read, imported, skipped and rejected, live while it runs."""
    async with opened(request, "get_import") as ws:
        found = await _import(ws)
        return ws.page(
            "workspace/import.html",
            imp=found,
            figures=_figures(found),
            live=found["status"] not in ENDED,
            notice=NOTICES.get(ws.request.query.get("done", "")),
        )


async def progress(request: web.Request) -> web.Response:
    """GET: the import's figures as JSON, for the page's polling script."""
    async with opened(request, "get_import") as ws:
        found = await _import(ws)
    return web.json_response(_figures(found), headers={"Cache-Control": "no-store"})


async def error_report(request: web.Request) -> web.Response:
    """GET: every rejected row (line and reason) as CSV, formula-safe (mailer.csv_safe)."""
    async with opened(request, "import_errors") as ws:
        found = await _import(ws)
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            batch = await imports.list_errors(
                ws.conn, found["id"], after_line=after, limit=ERROR_PAGE
            )
            rows.extend(batch)
            if len(batch) < ERROR_PAGE:
                break
            after = batch[-1]["line"]
    return web.Response(
        text=csv_text(("line", "reason"), rows),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="import-{found["id"]}-errors.csv"',
            "Cache-Control": "no-store",
        },
    )


async def _import(ws: Workspace) -> dict[str, Any]:
    """The import in the URL, inside the tenant: another tenant's id reads like none."""
    import_id = path_id(ws.request.match_info["import_id"])
    if import_id is None:
        raise NotFound("No such import.", field="id")
    return await imports.get_import(ws.conn, ws.tenant_id, import_id)


def _figures(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": found["status"],
        "read": found["committed_line"],
        "imported": found["rows_imported"],
        "skipped": found["rows_skipped"],
        "rejected": found["rows_bad"],
        "ended": found["status"] in ENDED,
    }


# --- suppression lists --------------------------------------------------------------------------


async def suppressions_page(request: web.Request) -> web.Response:
    """GET: upload a suppression list, download the tenant's suppressions; after an upload,
    its counts (``?added=&already=&bad=``)."""
    async with opened(request, "list_suppressions") as ws:
        counts = {k: path_id(ws.request.query.get(k, "")) for k in COUNTS}
        shown = {k: v or 0 for k, v in counts.items()} if "added" in ws.request.query else None
        return _suppressions(ws, result=shown)


def _suppressions(
    ws: Workspace,
    *,
    error: OptoutError | None = None,
    result: dict[str, int] | None = None,
    status: int = 200,
) -> web.Response:
    return ws.page(
        "workspace/suppressions.html",
        status=status,
        reasons=REASONS,
        error=error,
        result=result,
        limit_mib=uploads.MAX_UPLOAD_BYTES // (1024 * 1024),
    )


async def upload_suppressions(request: web.Request) -> web.Response:
    """POST (multipart): suppress every address of the file with the reason chosen, then the
    page with the counts."""
    async with uploaded(request, "import_suppressions") as (ws, fields, file_part):
        try:
            reason = fields.get("reason", "")
            if reason not in REASONS:
                raise InvalidInput(
                    f"The reason must be one of {', '.join(REASONS)}.", field="reason"
                )
            if file_part is None:
                raise InvalidInput("Choose a CSV file of addresses.", field="file")
            settings = ws.request.app[SETTINGS]
            path = await uploads.spool(_chunks(file_part), settings)
            try:
                result = await suppression_lists.import_file(
                    ws.conn,
                    hash_key=settings.hash_key,
                    tenant_id=ws.tenant_id,
                    path=path,
                    reason=reason,
                    actor=ws.actor,
                    token_id=ws.principal.token_id,
                )
            finally:
                uploads.discard(path)
        except OptoutError as exc:
            return _suppressions(ws, error=exc, status=400)
        counts = result.as_dict()
        target = ws.url("ws_suppressions", {k: str(counts[k]) for k in COUNTS})
    return see_other(target)


async def export_suppressions(request: web.Request) -> web.Response:
    """POST: the tenant's suppressions as CSV (keyed hashes, never an address); a POST
    because the export is recorded and audited."""
    async with posted(request, "list_suppressions") as (ws, _form):
        out = io.StringIO()
        await suppression_lists.export(ws.conn, tenant_id=ws.tenant_id, out=out, actor=ws.actor)
        slug = ws.slug
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{slug}-suppressions.csv"',
            "Cache-Control": "no-store",
        },
    )
