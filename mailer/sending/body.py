"""A campaign body written in the workspace (Markdown or HTML) turned into the HTML and text
parts the ``campaign`` email template places into its layout.

The body is staff input: it is rendered in Jinja's sandbox with only the merge fields
(``{{ name }}``, ``{{ email }}``, ``{{ unsubscribe_url }}``, ``{{ preferences_url }}``) in
scope. compose passes each field as its per-recipient slot marker, so a recipient's own values
go in at send time, HTML-escaped in the HTML part (a name like ``<b>`` stays text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import jinja2
import markupsafe
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt

from mailer.errors import InvalidInput

FORMATS = ("markdown", "html")
MAX_BODY = 100_000
MAX_PREHEADER = 200
MERGE_FIELDS = ("name", "email", "unsubscribe_url", "preferences_url")
# What a new campaign's body starts with: the unsubscribe link is the marketer's to place, as
# in Mailchimp, and sending is refused without it.
DEFAULT_BODY = (
    "# Hello {{ name }}\n\n"
    "Write your news here.\n\n"
    "---\n\n"
    "[Unsubscribe]({{ unsubscribe_url }}) from these emails.\n"
)


class BodyError(InvalidInput):
    """The campaign body cannot be used."""

    code = "template"


@dataclass(frozen=True, slots=True)
class Parts:
    html: markupsafe.Markup
    text: str


@cache
def _sandbox() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=False,  # markers are alphanumeric; escaping happens per recipient
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@cache
def _markdown() -> MarkdownIt:
    # CommonMark with raw HTML allowed (marketers paste snippets), tables and strikethrough.
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _merge(source: str, where: str, fields: Mapping[str, str]) -> str:
    try:
        return _sandbox().from_string(source).render(fields)
    except jinja2.TemplateSyntaxError as exc:
        raise BodyError(f"{where} line {exc.lineno}: {exc.message}", field=where) from exc
    except jinja2.UndefinedError as exc:
        known = ", ".join(_field(f) for f in MERGE_FIELDS)
        message = f"{where}: {exc.message}; the merge fields are {known}"
        raise BodyError(message, field=where) from exc
    except jinja2.TemplateError as exc:
        raise BodyError(f"{where}: {exc}", field=where) from exc


def _field(name: str) -> str:
    return "{{ " + name + " }}"


def to_text(html_text: str) -> str:
    """The plain-text rendering of an HTML body: links keep their address."""
    text = get_text(html_text, ParserConfig(display_links=True))
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


def check_values(values: Mapping[str, object]) -> tuple[str, str, str]:
    """(format, body, text override) of a campaign's values, checked."""
    fmt = values.get("format", "markdown")
    body = values.get("body")
    text = values.get("text") or ""
    if fmt not in FORMATS:
        raise BodyError(f"the body format must be one of {', '.join(FORMATS)}", field="format")
    if not isinstance(body, str) or not body.strip():
        raise BodyError("the body is empty", field="body")
    if not isinstance(text, str):
        raise BodyError("the text part must be text", field="text")
    if len(body) > MAX_BODY or len(text) > MAX_BODY:
        raise BodyError(f"the body is longer than {MAX_BODY} characters", field="body")
    preheader = values.get("preheader") or ""
    if not isinstance(preheader, str) or len(preheader) > MAX_PREHEADER:
        raise BodyError(f"the preheader is at most {MAX_PREHEADER} characters", field="preheader")
    return str(fmt), body, text


def render(values: Mapping[str, object], fields: Mapping[str, str]) -> Parts:
    """The body's HTML and text with ``fields`` (merge field -> value or slot marker) merged.

    Refused when either part lacks the unsubscribe link (STANDARDS 26)."""
    fmt, body, text = check_values(values)
    merged = _merge(body, "body", fields)
    html_text = _markdown().render(merged) if fmt == "markdown" else merged
    plain = _merge(text, "text", fields) if text.strip() else to_text(html_text)
    link = fields["unsubscribe_url"]
    if link not in html_text:
        raise BodyError(
            "the body has no unsubscribe link: add one with {{ unsubscribe_url }}, e.g. "
            "[Unsubscribe]({{ unsubscribe_url }})",
            field="body",
        )
    if link not in plain:
        raise BodyError(
            "the text part has no unsubscribe link: add {{ unsubscribe_url }} to it, or leave "
            "it empty to generate it from the body",
            field="text",
        )
    return Parts(markupsafe.Markup(html_text), plain)  # staff HTML: shown only sandboxed


def generated_text(values: Mapping[str, object]) -> str:
    """The text part generated from the body, merge fields left as written (for the editor)."""
    fmt, body, _ = check_values(values)
    if fmt == "html":
        return to_text(body)
    # Markdown renders link targets percent-encoded; keep the fields as the marketer wrote them.
    markers = {f: f"MERGEFIELD{i}X" for i, f in enumerate(MERGE_FIELDS)}
    text = to_text(_markdown().render(_merge(body, "body", markers)))
    for name, marker in markers.items():
        text = text.replace(marker, _field(name))
    return text
