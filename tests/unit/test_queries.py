"""Every named query the code calls exists, so a typo fails here rather than in production."""

from __future__ import annotations

import re
from pathlib import Path

from mailer.db import queries
from mailer.resources import QUERIES_DIR

ROOT = Path(__file__).resolve().parents[2]

CALL = re.compile(r"queries\(\)\.(\w+)\.(\w+)")
# `q = queries().consent` then `q.name(...)`
ALIAS = re.compile(r"(\w+) = queries\(\)\.(\w+)\n")


def called_queries() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in [*ROOT.glob("mailer/**/*.py"), *ROOT.glob("unsubscribe_web/**/*.py")]:
        text = path.read_text()
        found |= set(CALL.findall(text))
        for alias, group in ALIAS.findall(text):
            found |= {(group, name) for name in re.findall(rf"\b{alias}\.(\w+)\(", text)}
    return found


def test_every_called_query_exists():
    missing = [
        f"{g}.{n}"
        for g, n in sorted(called_queries())
        if not hasattr(getattr(queries(), g, None), n)
    ]
    assert not missing, f"queries called but not defined in sql/queries: {missing}"
    assert len(called_queries()) > 20


def test_no_sql_strings_in_python():
    keywords = "SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|ALTER|DROP"
    statement = re.compile(rf"[\"']({keywords}) [a-z_(*]")
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*ROOT.glob("mailer/**/*.py"), *ROOT.glob("unsubscribe_web/**/*.py")]
        if statement.search(path.read_text())
    ]
    assert offenders == []


def test_query_files_are_loaded_by_name():
    names = {p.stem for p in QUERIES_DIR.glob("*.sql")}
    assert {"consent", "tenants", "migrations", "settings"} <= names
