"""The accessibility harness: axe-core (bundled by axe-playwright-python, no node) run in
Chromium on the page as it stands. Later workspace pages reuse ``assert_accessible``.

axe is injected through Playwright's evaluate, which needs JavaScript in the page's context:
use a context with ``java_script_enabled=True`` (the pages' own CSP stays in force).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

# WCAG 2.2 AA (STANDARDS 62): a violation of these impacts fails the test.
FAILING_IMPACTS = frozenset({"serious", "critical"})
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def _axe() -> Axe:
    return Axe()


async def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on ``page`` at or above the failing impacts."""
    results = await _axe().run(
        page, options={"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    )
    found: list[dict[str, Any]] = results.response["violations"]
    return [v for v in found if v.get("impact") in FAILING_IMPACTS]


def describe(found: list[dict[str, Any]]) -> str:
    lines = []
    for v in found:
        nodes = v.get("nodes") or []
        targets = [n.get("target") for n in nodes if isinstance(n, dict)][:3]
        lines.append(f"{v.get('id')} ({v.get('impact')}): {v.get('help')} at {targets}")
    return "\n".join(lines)


async def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page (STANDARDS 62)."""
    found = await violations(page)
    assert not found, f"{page.url}:\n{describe(found)}"
