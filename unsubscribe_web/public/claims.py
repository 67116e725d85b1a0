"""``/claims/{token}``: the link in the confirmation mail of a partner-sharing withdrawal
mailed from an unknown address. GET shows one button and changes nothing (link scanners);
the POST confirms, and only then is a data request with its deadline opened."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from mailer.inbound.claims import confirm_claim
from mailer.tokens import Purpose
from unsubscribe_web.keys import KEYRING
from unsubscribe_web.pages import connection, render


def add_routes(app: web.Application) -> None:
    resource = app.router.add_resource("/claims/{token}", name="claim")
    resource.add_route("GET", page)
    resource.add_route("POST", confirm)


async def page(request: web.Request) -> web.Response:
    request.app[KEYRING].verify(request.match_info["token"], Purpose.CLAIM)
    return render(request, "claim.html", done=False, action=request.path)


async def confirm(request: web.Request) -> web.Response:
    claims = request.app[KEYRING].verify(request.match_info["token"], Purpose.CLAIM)
    async with connection(request) as conn:
        await confirm_claim(conn, claims, now=dt.datetime.now(dt.UTC))
    return render(request, "claim.html", done=True, action=request.path)
