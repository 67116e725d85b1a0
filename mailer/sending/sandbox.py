"""The Jinja sandbox tenant templates render in: templates written in the workspace are
untrusted input (G9), so they see only the built-in partials and their own tenant's templates
(no file system, no other tenant), no Python internals, and a time and size budget.

The budget is checked on every call, attribute, item and output chunk the template makes,
so a loop without output still stops: ranges are bounded by the sandbox, and each new range
or call passes the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from mailer.i18n import SOURCE_LANGUAGE, translations
from mailer.resources import EMAIL_TEMPLATES_DIR

MAX_SOURCE = 256 * 1024  # octets of UTF-8 per part, as the issue says
MAX_OUTPUT = 2 * 1024 * 1024  # characters a render may produce (a loop of copies stops here)
RENDER_SECONDS = 1.0
# Prefix of the file names Jinja shows in tracebacks, so a line is traced to its template.
SOURCE_PREFIX = "tenant-template:"
_MAX_POWER = 1000  # 10 ** 10 ** 10 would hang in a C loop no clock can stop


class RenderBudget(SecurityError):
    """The template took too long or made too much output."""


@dataclass(frozen=True, slots=True)
class Layout:
    """A tenant template used as a campaign's layout: its parts at one version, and the
    tenant's other templates (newest versions) it may include by ``NAME.html``/``NAME.txt``."""

    name: str
    html: str
    text: str
    version: int = 0
    others: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def sources(self) -> dict[str, str]:
        found = dict(builtin_partials())
        for other, (html_src, text_src) in self.others.items():
            found[f"{other}.html"] = html_src
            found[f"{other}.txt"] = text_src
        found[f"{self.name}.html"] = self.html
        found[f"{self.name}.txt"] = self.text
        return found


@cache
def builtin_partials() -> dict[str, str]:
    """The built-in partials (``_head.html``, ``_footer.html``, ``_footer.txt``)."""
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(EMAIL_TEMPLATES_DIR.iterdir())
        if path.name.startswith("_") and path.suffix in (".html", ".txt")
    }


class _Loader(jinja2.BaseLoader):
    """Only the names given: no file system, no other tenant."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self._sources:
            raise jinja2.TemplateNotFound(template)
        return self._sources[template], SOURCE_PREFIX + template, lambda: True


class BudgetSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    deadline = 0.0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderBudget(f"the template takes longer than {RENDER_SECONDS:g} s to render")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.tick()
        return super().call(context, obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POWER:
            raise RenderBudget("the template computes too large a number")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_OUTPUT:
                    raise RenderBudget("the template makes too much output")
        return super().call_binop(context, operator, left, right)


def environment(sources: Mapping[str, str], language: str = SOURCE_LANGUAGE) -> BudgetSandbox:
    """A sandbox over exactly ``sources``, configured like the built-in templates' one (the
    built-in partials speak ``language``); its clock starts now, so both parts of a message
    share one budget."""
    env = BudgetSandbox(
        loader=_Loader(sources),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(  # type: ignore[attr-defined]
        translations(language), newstyle=True
    )
    env.deadline = time.monotonic() + RENDER_SECONDS
    return env


def render(env: BudgetSandbox, name: str, context: Mapping[str, Any]) -> str:
    """Render ``name`` within the budget (RenderBudget when over it)."""
    template = env.get_template(name)
    out: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise RenderBudget("the template makes too much output")
        env.tick()
        out.append(chunk)
    return "".join(out)
