"""Imports and suppression lists in the workspace through the real app on real Postgres: a
CSV uploaded in the browser streams to the uploads folder, the import runs on after the
request while its page shows rows read and rejected, the report of rejected rows downloads
formula-safe; a suppression list uploads, and the tenant's suppressions download."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from typing import Any

import aiohttp

from mailer.csv_safe import FORMULA_STARTS
from tests.conftest import probes
from tests.support.mailer_env import address_key
from tests.support.workspace import csrf_of, page_of, sign_in, state
from unsubscribe_web.dashboard.workspace import csrf_for

BAD = 10
ROWS = 1000


def people_csv(rows: int = ROWS, bad: int = BAD) -> str:
    """``rows`` rows, every (rows // bad)-th one a broken address (one a formula)."""
    lines = ["email,name"]
    step = rows // bad
    for i in range(rows):
        if i % step == step - 1:
            broken = "=HYPERLINK(1)" if i == step - 1 else f"broken-{i}"
            lines.append(f"{broken},Bad {i}")
        else:
            lines.append(f"person{i}@example.org,Person {i}")
    return "\n".join(lines) + "\n"


def upload_form(csrf: str | None, fields: dict[str, str], text: str, name: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if csrf is not None:
        form.add_field("csrf", csrf)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", text.encode(), filename=name, content_type="text/csv")
    return form


IMPORT_FIELDS = {
    "topic": "newsletter",
    "lawful_basis": "consent",
    "source": "trade fair",
    "age_attested": "yes",
}


async def finished(client, cookie, url: str) -> dict[str, Any]:
    """Poll the import's progress JSON (bounded) until it ends."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        figures: dict[str, Any] = await (
            await client.get(f"{url}/progress.json", headers=cookie)
        ).json()
        if figures["ended"]:
            return figures
        await asyncio.sleep(0.2)
    raise AssertionError("the import did not finish in 60 s")


async def test_a_marketer_imports_a_csv_and_downloads_the_report_of_the_bad_rows(
    client, conn, app_settings, acme
):
    cookie = await sign_in(client, acme.tokens["marketing"])
    page = await page_of(client, cookie, "/dashboard/t/acme/imports")
    assert 'enctype="multipart/form-data"' in page
    response = await client.post(
        "/dashboard/t/acme/imports",
        data=upload_form(csrf_of(page), IMPORT_FIELDS, people_csv(), "fair.csv"),
        headers=cookie,
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    url = response.headers["Location"].split("?")[0]
    figures = await finished(client, cookie, url)
    assert figures == {
        "status": "done",
        "read": ROWS + 1,
        "imported": ROWS - BAD,
        "skipped": 0,
        "rejected": BAD,
        "ended": True,
    }
    html = await page_of(client, cookie, url)
    assert "fair.csv" in html and 'data-field="rejected">10<' in html
    assert "workspace.js" not in html  # done: nothing to poll
    report = await client.get(f"{url}/errors.csv", headers=cookie)
    assert report.status == 200 and report.content_type == "text/csv"
    assert "attachment" in report.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await report.text())))
    assert len(rows) == BAD
    assert [int(r["line"]) for r in rows] == [2 + i for i in range(ROWS) if i % 100 == 99]
    assert not any(r["reason"].startswith(FORMULA_STARTS) for r in rows)
    # The upload left no file behind.
    assert list((app_settings.data_dir / "uploads").iterdir()) == []


async def test_a_refused_import_shows_why_and_starts_nothing(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["marketing"])
    page = await page_of(client, cookie, "/dashboard/t/acme/imports")
    before = await state(conn)
    imports_before = await probes().import_count(conn, tenant_id=acme.id)
    for fields, text, message in (
        (IMPORT_FIELDS | {"lawful_basis": "because"}, people_csv(10, 1), "lawful basis"),
        (IMPORT_FIELDS | {"age_attested": ""}, people_csv(10, 1), "minimum age"),
        (IMPORT_FIELDS | {"topic": "nope"}, people_csv(10, 1), "topic"),
        (IMPORT_FIELDS, "name,phone\nA,1\n", "email"),
    ):
        response = await client.post(
            "/dashboard/t/acme/imports",
            data=upload_form(csrf_of(page), fields, text, "x.csv"),
            headers=cookie,
            allow_redirects=False,
        )
        html = await response.text()
        assert response.status in (400, 404), html
        assert message in html.lower(), (message, html)
        assert await probes().import_count(conn, tenant_id=acme.id) == imports_before
        assert (await state(conn))["people"] == before["people"]


async def test_suppression_lists_upload_and_download_without_addresses(
    client, conn, app_settings, acme
):
    cookie = await sign_in(client, acme.tokens["compliance"])
    page = await page_of(client, cookie, "/dashboard/t/acme/suppressions")
    text = "email\ngone@example.org\nalso-gone@example.org\nnot an address\n"
    response = await client.post(
        "/dashboard/t/acme/suppressions",
        data=upload_form(csrf_of(page), {"reason": "complaint"}, text, "list.csv"),
        headers=cookie,
        allow_redirects=False,
    )
    assert response.status == 303
    done = await page_of(client, cookie, response.headers["Location"])
    assert re.search(r"Suppressed 2 new addresses; 0 already suppressed; 1 line refused", done)
    key = address_key(app_settings, acme.id, "gone@example.org")
    found = await probes().suppression_of(conn, tenant_id=acme.id, address_key=key)
    assert found is not None
    download = await client.post(
        "/dashboard/t/acme/suppressions/export",
        data={"csrf": csrf_of(done)},
        headers=cookie,
        allow_redirects=False,
    )
    assert download.status == 200 and download.content_type == "text/csv"
    body = await download.text()
    assert key.hex() in body and "@" not in body


async def test_an_upload_without_the_right_or_the_csrf_token_is_refused_before_the_file(
    client, conn, app_settings, acme, beta
):
    """The multipart form's checks come before its file: nothing reaches the uploads folder."""
    marketing = await sign_in(client, acme.tokens["marketing"])
    token = csrf_of(await page_of(client, marketing, "/dashboard/t/acme/imports"))
    holder = await sign_in(client, acme.tokens["client"])
    client_token = csrf_for(client.app, acme.tokens["client"])
    before = await state(conn)
    for cookie, csrf, path, status in (
        (holder, client_token, "/dashboard/t/acme/imports", 403),  # client: no imports.write
        (marketing, None, "/dashboard/t/acme/imports", 403),
        (marketing, token, "/dashboard/t/beta/imports", 404),
        (marketing, token, "/dashboard/t/acme/suppressions", 403),  # no suppressions.write
    ):
        response = await client.post(
            path,
            data=upload_form(csrf, IMPORT_FIELDS | {"reason": "complaint"}, people_csv(), "x.csv"),
            headers=cookie,
            allow_redirects=False,
        )
        assert response.status == status, (path, await response.text())
        assert await state(conn) == before
        uploads = app_settings.data_dir / "uploads"
        assert not uploads.exists() or list(uploads.iterdir()) == []
