"""What every benchmark shares: fixed keys and a Postgres to run on (DATABASE_URL, or an
embedded server in a temporary folder)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mailer.config import Settings
from mailer.db import start_embedded

KEYS = (("bench1", b"bench-link-key-0123456789abcdefghijklmnop"),)
HASH_KEY = b"bench-hash-key-0123456789abcdefghijklmnop"


@contextlib.contextmanager
def server_dsn() -> Iterator[str]:
    """Admin DSN of the server to benchmark on."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="optout-bench-pg-") as folder:
        # Run as root, the embedded server's own user must be able to enter the folder.
        os.chmod(folder, 0o755)
        server = start_embedded(Path(folder))
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def settings_for(dsn: str, data_dir: Path, base_url: str = "https://optout.example") -> Settings:
    return Settings(
        database_url=dsn,
        data_dir=data_dir,
        base_url=base_url,
        secret_keys=KEYS,
        hash_key=HASH_KEY,
    )


def optout_env(dsn: str, sink_port: int, **values: str) -> dict[str, str]:
    """Environment of an `optout` process of a benchmark: the bench keys, sending to the sink
    at ``sink_port``; ``values`` add or override OPTOUT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env |= {
        "DATABASE_URL": dsn,
        # Required with DATABASE_URL: the consent journal, outside the benchmark's database.
        "OPTOUT_JOURNAL_DIR": str(Path(tempfile.gettempdir()) / "optout-bench-journal"),
        "OPTOUT_SECRET_KEYS": ",".join(f"{k}:{v.decode()}" for k, v in KEYS),
        "OPTOUT_HASH_KEY": HASH_KEY.decode(),
        "OPTOUT_BASE_URL": "https://optout.bench.example",
        "SMTP_URL": f"smtp://127.0.0.1:{sink_port}?starttls=off",
    }
    return env | values
