"""Shared ground of the scale tests: the seed and probe queries of tests/sql/scale.sql."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import aiosql


@cache
def scale() -> Any:
    """Seeds and probes for big tables (never used by the app)."""
    return aiosql.from_path(Path(__file__).parents[2] / "sql" / "scale.sql", "asyncpg")
