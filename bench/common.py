"""What every benchmark shares: fixed keys and a Postgres to run on (DATABASE_URL, or an
embedded server in a temporary folder)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailer.admin_db import create_database, drop_database
from mailer.config import Settings
from mailer.db import connect, start_embedded, with_database

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


async def recreate_database(admin_dsn: str, name: str) -> str:
    """A new empty database ``name`` on the server (an earlier one dropped); its DSN."""
    admin = await connect(admin_dsn)
    try:
        await drop_database(admin, name)
        await create_database(admin, name)
    finally:
        await admin.close()
    return with_database(admin_dsn, name)


async def drop_bench_database(admin_dsn: str, name: str) -> None:
    admin = await connect(admin_dsn)
    try:
        await drop_database(admin, name)
    finally:
        await admin.close()


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


def wait_with_peak(
    process: subprocess.Popen[Any], stop: Callable[[], bool] | None = None
) -> tuple[int, float, float]:
    """Wait for a child: (wait status, user+sys CPU seconds, peak RSS in MB). When ``stop``
    returns true the child is sent SIGTERM, once, and waited for.

    The peak is the child's own high-water mark (VmHWM), read every 0.1 s while it runs, not
    wait4's ru_maxrss: on Linux a spawned child's ru_maxrss starts from the parent's RSS at the
    spawn (exec folds the parent's high-water mark into the child's), so it rose with the
    benchmark's own process, run after run, whatever the child did."""
    peak_kb = 0
    stopped = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            return status, usage.ru_utime + usage.ru_stime, peak_kb / 1024
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        if stop is not None and not stopped and stop():
            process.send_signal(signal.SIGTERM)
            stopped = True
        time.sleep(0.1)


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
