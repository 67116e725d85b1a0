"""CSV uploads of the API: streamed to a temporary file under the data folder (never held in
memory), bounded in size, deleted when the work is done."""

from __future__ import annotations

import tempfile
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


def too_large() -> InvalidInput:
    return InvalidInput(
        f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; "
        "use `optout import` on the server.",
        field="file",
    )


async def spool(request: web.Request, settings: Settings) -> Path:
    """Stream the upload to a temporary file (never held in memory), bounded in size."""
    size = 0
    with tempfile.NamedTemporaryFile(
        dir=upload_folder(settings), suffix=".csv", delete=False
    ) as out:
        path = Path(out.name)
        try:
            async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise too_large()
                out.write(chunk)
        except BaseException:
            discard(path)
            raise
    return path
