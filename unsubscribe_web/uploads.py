"""Uploads of CSV files (imports, suppression lists), from the admin API's body or a workspace
form's file field: streamed to a file in OPTOUT_DATA_DIR/uploads (never held in memory),
bounded in size, one path and one limit for both faces."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable
from pathlib import Path

from aiohttp import web

from mailer.config import Settings
from mailer.errors import InvalidInput

MAX_UPLOAD_BYTES = 256 * 1024 * 1024
UPLOAD_CHUNK = 64 * 1024


def upload_folder(settings: Settings) -> Path:
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)


async def spool_body(request: web.Request, settings: Settings) -> Path:
    """An API upload: the request's body, streamed like ``spool``."""
    return await spool(request.content.iter_chunked(UPLOAD_CHUNK), settings)


async def spool(chunks: AsyncIterable[bytes], settings: Settings) -> Path:
    """Write ``chunks`` to a new file under the uploads folder; InvalidInput (and no file
    left behind) past MAX_UPLOAD_BYTES."""
    size = 0
    with tempfile.NamedTemporaryFile(
        dir=upload_folder(settings), suffix=".csv", delete=False
    ) as out:
        path = Path(out.name)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise InvalidInput(
                        f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; "
                        "use `optout import` on the server.",
                        field="file",
                    )
                out.write(chunk)
        except BaseException:
            discard(path)
            raise
    return path
