"""How many bounces are recorded with a status (issue 23): over every bounce fixture in
tests/fixtures (real ones from flufl.bounce's test data, the DSN fixtures, the synthetic
ones), the share whose parse yields a failed or delayed recipient with an RFC 3463 status,
next to the same share for the parser on `main` before this work (read from git, run in the
same process on the same files), and their ratio.

A bounce to a VERP address is recorded against the delivery its address names whenever the
parse yields a failure (tests/integration/inbound/test_inbound_bounce_families.py holds that
path end to end), so "with a status" is the figure that moves.

    .venv/bin/python -m bench.bounces [--baseline-ref main]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
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


def baseline_parser(ref: str) -> Callable[[bytes], Any]:
    """parse_bounce as it is at ``ref``, loaded from git into a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:mailer/inbound/bounce_parse.py"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    module = types.ModuleType("bounce_parse_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{ref}:mailer/inbound/bounce_parse.py", "exec"), module.__dict__)
    parser: Callable[[bytes], Any] = module.parse_bounce
    return parser


def with_status(report: Any) -> bool:
    return any(
        r.action in ("failed", "delayed") and r.status is not None for r in report.recipients
    )


def share(parser: Callable[[bytes], Any], files: list[Path]) -> tuple[int, int, float]:
    """(recorded with a status, recognised at all, seconds)."""
    started = time.perf_counter()
    statused = recognised = 0
    for path in files:
        report = parser(path.read_bytes())
        recognised += bool(report.recognised and report.recipients)
        statused += with_status(report)
    return statused, recognised, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline parser")
    args = parser.parse_args()
    files = fixtures()
    base_status, base_recognised, base_seconds = share(baseline_parser(args.baseline_ref), files)
    now_status, now_recognised, now_seconds = share(parse_bounce, files)
    n = len(files)
    print(f"bounce fixtures: {n}")
    print(
        f"baseline ({args.baseline_ref}): recognised {base_recognised}/{n} "
        f"({base_recognised / n:.1%}), with a status {base_status}/{n} ({base_status / n:.1%}), "
        f"{base_seconds * 1000 / n:.2f} ms per bounce"
    )
    print(
        f"this checkout: recognised {now_recognised}/{n} ({now_recognised / n:.1%}), "
        f"with a status {now_status}/{n} ({now_status / n:.1%}), "
        f"{now_seconds * 1000 / n:.2f} ms per bounce"
    )
    print(
        f"ratio with a status (this / baseline): {now_status / max(base_status, 1):.2f}; "
        f"time per bounce: {now_seconds / max(base_seconds, 1e-9):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
