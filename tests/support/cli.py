"""`optout ...` as an operator runs it: a subprocess of this interpreter, output captured."""

from __future__ import annotations

import subprocess
import sys


def optout(
    *args: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
