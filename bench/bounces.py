"""How many bounces are recorded with a status (issue 23): over every bounce fixture in
tests/fixtures (real ones from flufl.bounce's, BounceParser's and bounced's test data, the
captured ones, the DSN fixtures, the synthetic ones), the share whose parse yields a failed or
delayed recipient with an RFC 3463 status, and with a specific one (not the bare class X.0.0
that the policy's 5.1.1 and 5.7.x rules cannot act on), next to the same shares for the parser
on `main` (the mailer package at that ref, from git, in a process of its own, on the same
files), and their ratio.

A bounce to a VERP address is recorded against the delivery its address names whenever the
parse yields a failure (tests/integration/inbound/test_inbound_bounce_families.py holds that
path end to end), so "with a status" is the figure that moves.

    .venv/bin/python -m bench.bounces [--baseline-ref main]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailer.inbound.bounce_parse import parse_bounce

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIRS = (ROOT / "tests" / "fixtures" / "bounces", ROOT / "tests" / "fixtures" / "dsn")
# Reports of success are not bounces.
NOT_BOUNCES = frozenset({"delivered_success.eml"})


def fixtures() -> list[Path]:
    found = sorted(p for d in FIXTURE_DIRS for p in d.rglob("*.eml"))
    return [p for p in found if p.name not in NOT_BOUNCES]


def baseline_share(ref: str, files: list[Path]) -> tuple[int, int, int, float]:
    """share() for the parser as it is at ``ref``: the whole mailer package at that ref
    (bounce_parse and the family readers it imports), in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-bounces-") as tree:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "mailer"],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True, timeout=60)
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]);"
            "from mailer.inbound.bounce_parse import parse_bounce;"
            "from bench.bounces import share;"
            "print(json.dumps(share(parse_bounce, [Path(f) for f in sys.argv[2:]])))"
        )
        result = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path;" + code, tree]
            + [str(f) for f in files],
            check=True, capture_output=True, text=True, timeout=600, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    statused, specific, recognised, seconds = json.loads(result.stdout)
    return int(statused), int(specific), int(recognised), float(seconds)


def with_status(report: Any) -> bool:
    return any(
        r.action in ("failed", "delayed") and r.status is not None for r in report.recipients
    )


def with_specific_status(report: Any) -> bool:
    """A status naming a cause, not just a class (X.0.0): the policy rules that act on 5.1.1
    or 5.7.x can only act on these."""
    return any(
        r.action in ("failed", "delayed") and r.status is not None and not r.status.endswith(".0.0")
        for r in report.recipients
    )


def share(parser: Callable[[bytes], Any], files: list[Path]) -> tuple[int, int, int, float]:
    """(recorded with a status, with a specific one, recognised at all, seconds)."""
    started = time.perf_counter()
    statused = specific = recognised = 0
    for path in files:
        report = parser(path.read_bytes())
        recognised += bool(report.recognised and report.recipients)
        statused += with_status(report)
        specific += with_specific_status(report)
    return statused, specific, recognised, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline parser")
    args = parser.parse_args()
    files = fixtures()
    base_status, base_specific, base_recognised, base_seconds = baseline_share(
        args.baseline_ref, files
    )
    now_status, now_specific, now_recognised, now_seconds = share(parse_bounce, files)
    n = len(files)
    print(f"bounce fixtures: {n}")
    print(
        f"baseline ({args.baseline_ref}): recognised {base_recognised}/{n} "
        f"({base_recognised / n:.1%}), with a status {base_status}/{n} ({base_status / n:.1%}), "
        f"a specific one (not X.0.0) {base_specific}/{n} ({base_specific / n:.1%}), "
        f"{base_seconds * 1000 / n:.2f} ms per bounce"
    )
    print(
        f"this checkout: recognised {now_recognised}/{n} ({now_recognised / n:.1%}), "
        f"with a status {now_status}/{n} ({now_status / n:.1%}), "
        f"a specific one {now_specific}/{n} ({now_specific / n:.1%}), "
        f"{now_seconds * 1000 / n:.2f} ms per bounce"
    )
    print(
        f"ratio with a status (this / baseline): {now_status / max(base_status, 1):.2f}; "
        f"with a specific one: {now_specific / max(base_specific, 1):.2f}; "
        f"time per bounce: {now_seconds / max(base_seconds, 1e-9):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
