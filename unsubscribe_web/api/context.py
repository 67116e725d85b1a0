"""What every admin API handler gets (the checked request, the caller, a connection) and the
small helpers of their answers: pages with a cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from mailer.api_tokens import Principal
from mailer.config import Settings
from mailer.errors import InvalidInput, NotFound
from unsubscribe_web.api.spec import path_id

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(slots=True)
class Ctx:
    """What a handler gets: the checked request and where it runs."""

    request: web.Request
    conn: asyncpg.Connection
    principal: Principal
    settings: Settings
    query: dict[str, Any]
    body: Any
    tenant: asyncpg.Record | None
    target: tuple[str, int] | None = None  # what the audit line names

    @property
    def tenant_id(self) -> int:
        assert self.tenant is not None
        tenant_id: int = self.tenant["id"]
        return tenant_id

    def path_id(self, name: str, missing: NotFound) -> int:
        value = path_id(self.request.match_info[name])
        if value is None:
            raise missing
        return value


def page(items: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": cursor if len(items) >= limit else None}


def id_cursor(raw: str | None, *, default: int = 0) -> int:
    if raw is None:
        return default
    value = path_id(raw)
    if value is None:
        raise InvalidInput("cursor is not valid.", field="cursor")
    return value
