"""Turn an email template, campaign values and per-recipient values into the bytes to sign and send.

``prepare`` does the slow work once per campaign (jinja2, CSS inlining, shared headers, and the
quoted-printable encoding of every line that is the same for all recipients); ``render`` then
only fills the per-recipient slots, so a worker can build thousands of messages a second.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
import secrets
import time
import traceback
from binascii import b2a_qp
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
import jinja2
import markupsafe

from mailer.config import LOOPBACK_HOSTS
from mailer.errors import InvalidAddress, InvalidInput
from mailer.i18n import SOURCE_LANGUAGE, choose, format_date, translations
from mailer.resources import EMAIL_TEMPLATES_DIR
from mailer.sending import body as campaign_body
from mailer.sending import sandbox
from mailer.sending.sandbox import Layout as Layout

TEMPLATE_DIR = EMAIL_TEMPLATES_DIR

MAX_SUBJECT = 255
MAX_NAME = 255
MAX_ADDRESS = 254
MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
SOFT_LINE = 78  # RFC 5322 2.1.1: lines SHOULD be no longer

# Campaign values a template must not receive, per template (STANDARDS 34: a policy notice is a
# transactional message and must not turn into marketing).
_FORBIDDEN_VALUES: dict[str, dict[str, str]] = {
    "policy_notice": {"blocks": "policy notices cannot carry marketing content blocks"},
}
_RESERVED_NAMES = frozenset({"sender", "recipient", "subject", "body_html", "body_text"})
# Templates whose content is a body written in the workspace (mailer.sending.body).
BODY_TEMPLATES = frozenset({"campaign"})
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]*")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RAW_PHRASE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A dot-atom local part at a host name: no specials, so no second address can ride along.
# The local part may be UTF-8 (RFC 6531/6532: such mail goes only with SMTPUTF8, which the
# transport checks); the domain is the ASCII form.
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_URI = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII without < > or spaces
# 42 octets are 56 base64 chars: "=?utf-8?b?" + 56 + "?=" is 68, so even "Subject: " + word and
# "List-Id: " + word stay within 78 octets (and the word within RFC 2047's 75).
_ENCODED_WORD_BYTES = 42

# The fixed per-recipient slots, in the order of the value vector ``render`` builds.
_FIXED_SLOTS = ("name", "to_address", "unsubscribe_url", "preferences_url", "mailto_unsubscribe")


class HeaderInjection(InvalidInput):
    """A header value contains a line break or control character."""

    code = "header_injection"


class TemplateError(InvalidInput):
    """The template cannot be rendered."""

    code = "template"


@dataclass(frozen=True, slots=True)
class Sender:
    """The tenant-side values of a campaign; the same for every recipient."""

    from_name: str
    from_address: str
    domain: str
    postal_address: str
    list_id: str  # e.g. "Newsletter <newsletter.acme.news.example.com>"
    feedback_id: str  # "campaignid:tenantid:kind:optout" (Gmail's a:b:c:SenderId shape)
    # A web page, email or phone besides the postal address (STANDARDS 42), in the footer.
    contact_web: str = ""
    contact_email: str = ""
    contact_phone: str = ""


@dataclass(frozen=True, slots=True)
class Recipient:
    """The values that differ per message; links and codes are built by mailer.tokens."""

    to_address: str
    to_name: str | None
    message_id: str  # "<CODE@news.example.com>", CODE signs (tenant, delivery)
    unsubscribe_url: str  # https://BASE/u/TOKEN, also the footer's unsubscribe link
    mailto_unsubscribe: str  # unsubscribe+CODE@DOMAIN, or "" for none
    preferences_url: str
    date: str | None = None  # RFC 5322 date; now (GMT) when None
    extra: Mapping[str, str] = field(default_factory=dict)  # template slots: recipient.extra.X


class _ExtraSlots:
    """``recipient.extra`` in a template: a sentinel for each name the template uses."""

    def __init__(self, make_slot: Callable[[str], str]) -> None:
        self._make_slot = make_slot

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._make_slot(name)

    def __getitem__(self, name: str) -> str:
        return self._make_slot(name)


# One rendered part after prepare: static lines as finished quoted-printable bytes, and lines
# holding slots as str.format templates whose positional fields index the slot values.
_Chunks = tuple[bytes | str, ...]


class PreparedMessage:
    """A campaign's message with everything shared pre-encoded; ``render`` fills one recipient."""

    __slots__ = (
        "_boundary_close",
        "_extra_names",
        "_head_from",
        "_head_list_id",
        "_head_tail",
        "_html",
        "_html_open",
        "_list_mail",
        "_nameless",
        "_text",
        "template",
    )

    def __init__(
        self,
        *,
        template: str,
        list_mail: bool,
        head_from: bytes,
        head_list_id: bytes,
        head_tail: bytes,
        text: _Chunks,
        html_part: _Chunks,
        html_open: bytes,
        boundary_close: bytes,
        extra_names: tuple[str, ...],
        nameless: Callable[[], PreparedMessage] | None = None,
    ) -> None:
        self.template = template
        self._list_mail = list_mail
        self._head_from = head_from
        self._head_list_id = head_list_id
        self._head_tail = head_tail
        self._text = text
        self._html = html_part
        self._html_open = html_open
        self._boundary_close = boundary_close
        self._extra_names = extra_names
        # The same message for a person without a name ("Hello," not "Hello ,"), prepared on
        # first need; None when the message does not use the name.
        self._nameless: Callable[[], PreparedMessage] | PreparedMessage | None = nameless

    @property
    def extra_slots(self) -> tuple[str, ...]:
        """The ``Recipient.extra`` keys this template uses; each must be given to ``render``."""
        return self._extra_names

    def render(self, recipient: Recipient) -> bytes:
        """The complete message for one recipient: 7-bit, CRLF line endings, ready to sign."""
        if self._nameless is not None and not _name_of(recipient):
            if not isinstance(self._nameless, PreparedMessage):
                self._nameless = self._nameless()
            return self._nameless.render(recipient)
        values = _slot_values(recipient, self._extra_names)
        escaped = [html.escape(v) for v in values]
        out = [
            self._head_from,
            _to_header(recipient.to_address, recipient.to_name),
            b"Date: " + _ascii_header("Date", recipient.date or _now()) + b"\r\n",
            b"Message-ID: " + _message_id(recipient.message_id) + b"\r\n",
        ]
        if self._list_mail:
            out.append(self._head_list_id)
            out.append(_list_unsubscribe(recipient.unsubscribe_url, recipient.mailto_unsubscribe))
        out.append(self._head_tail)
        _append_part(out, self._text, values)
        out.append(self._html_open)
        _append_part(out, self._html, escaped)
        out.append(self._boundary_close)
        return b"".join(out)


def prepare(
    template: str,
    sender: Sender,
    subject: str,
    values: Mapping[str, object],
    *,
    language: str = SOURCE_LANGUAGE,
    layout: Layout | None = None,
) -> PreparedMessage:
    """Prepare list mail (newsletter, policy notice): List-* headers and the footer required.

    ``layout`` is a tenant's own template, rendered in the sandbox in place of the built-in
    ``template`` files (whose values it gets). Raises TemplateError when the template cannot be
    rendered, lacks the footer, or the tenant has no postal address; HeaderInjection when a
    header value is unsafe.
    """
    if not sender.postal_address.strip():
        raise TemplateError(
            "the tenant has no postal address; CAN-SPAM requires one in every commercial message",
            field="postal_address",
        )
    if not sender.list_id.strip():
        raise InvalidInput("list mail needs a List-Id", field="list_id")
    return _prepare(
        template, sender, subject, values, list_mail=True, language=language, layout=layout
    )


# The body a layout is checked with at save: no link of its own, so the layout must carry the
# unsubscribe and preference links and the postal address itself.
SAMPLE_BODY = campaign_body.Parts(
    html=markupsafe.Markup("<p>Sample body.</p>"), text="Sample body.\n"
)


def check_layout(layout: Layout, sender: Sender) -> PreparedMessage:
    """Refuse a tenant template at save: over the size limit, a template error (name and
    line), anything the sandbox forbids, over the time budget, or without the postal address,
    unsubscribe and preference links in either part, rendered for a sample recipient."""
    for part, source in (("html", layout.html), ("txt", layout.text)):
        if len(source.encode("utf-8")) > sandbox.MAX_SOURCE:
            raise TemplateError(
                f"{layout.name}.{part} is larger than {sandbox.MAX_SOURCE // 1024} KiB",
                field=part,
            )
    return _prepare(
        "campaign",
        sender,
        "Sample subject",
        {},
        list_mail=True,
        language=SOURCE_LANGUAGE,
        layout=layout,
        body=SAMPLE_BODY,
    )


def prepare_transactional(
    template: str,
    sender: Sender,
    subject: str,
    values: Mapping[str, object],
    *,
    language: str = SOURCE_LANGUAGE,
) -> PreparedMessage:
    """Prepare one-to-one mail (double opt-in confirmation): no List-* headers, no footer check.

    Links the template takes from ``recipient.extra`` must be given in each ``Recipient.extra``;
    the Recipient's list links may be "" where the template does not use them.
    """
    return _prepare(template, sender, subject, values, list_mail=False, language=language)


# --- preparation -------------------------------------------------------------------------------


@cache
def _environment(language: str = SOURCE_LANGUAGE) -> jinja2.Environment:
    """The built-in templates speaking ``language``: the words Optout writes itself (footer,
    greetings, confirmation) come from its catalog; the campaign's own content does not."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
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
    _add_filters(env, language)
    return env


def _add_filters(env: jinja2.Environment, language: str) -> None:
    env.filters["one_stop"] = one_stop
    env.filters["day"] = partial(_day, language)


def _day(language: str, moment: object, zone: str) -> str:
    """``{{ effective_at | day(time_zone) }}``: the day as ``language`` writes it, in the
    tenant's zone (campaign content holds the moment as ISO text, being JSON)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if not isinstance(moment, dt.datetime):
        raise TypeError(f"day needs a date and time, not {moment!r}")
    return format_date(moment, language, ZoneInfo(zone))


def subject_in(values: Mapping[str, object], language: str, subject: str) -> str:
    """The campaign's subject in ``language`` when its content has one per language
    (``subjects``, as Optout writes for a policy notice), else ``subject``."""
    subjects = values.get("subjects")
    if isinstance(subjects, Mapping) and isinstance(subjects.get(language), str):
        return str(subjects[language])
    return subject


def one_stop(sentence: str) -> str:
    """A sentence that ends with a name ending in a period ("Demo Newsletter Co.") ends with
    one period, not two."""
    return sentence[:-1] if sentence.endswith("..") else sentence


def _prepare(
    template: str,
    sender: Sender,
    subject: str,
    values: Mapping[str, object],
    *,
    list_mail: bool,
    language: str,
    layout: Layout | None = None,
    body: campaign_body.Parts | None = None,
    named: bool = True,
) -> PreparedMessage:
    """``named``: the recipient's name is a slot; otherwise the variant for people without a
    name, where ``recipient.name`` (and the body's ``{{ name }}``) is "" so templates can say
    ``{% if recipient.name %}``."""
    language = choose(language)
    if not _TEMPLATE_NAME.fullmatch(template):
        raise TemplateError(f"no email template named {template!r}", field="template")
    for key, message in _FORBIDDEN_VALUES.get(template, {}).items():
        if key in values:
            raise TemplateError(message, field=key)
    if clash := _RESERVED_NAMES.intersection(values):
        raise TemplateError(f"campaign values may not be named {sorted(clash)}", field="values")
    subject = subject_in(values, language, subject)
    head_from = _from_subject_headers(sender, subject)
    head_list_id = _list_id_header(sender.list_id) if list_mail else b""

    # A random alphanumeric sentinel survives autoescaping, the HTML parser of the CSS inliner
    # and every filter-free {{ }}; a clash with content is caught by _split and retried.
    for _attempt in range(3):
        nonce = "Q" + secrets.token_hex(10).upper() + "Q"
        extra_names: list[str] = []

        def extra_slot(name: str, nonce: str = nonce, extra_names: list[str] = extra_names) -> str:
            if name not in extra_names:
                extra_names.append(name)
            return f"{nonce}{len(_FIXED_SLOTS) + extra_names.index(name)}{nonce}"

        recipient = {name: f"{nonce}{i}{nonce}" for i, name in enumerate(_FIXED_SLOTS)}
        if not named:
            recipient["name"] = ""
        context: dict[str, Any] = {
            **values,
            "subject": subject,
            "sender": sender,
            "recipient": {**recipient, "extra": _ExtraSlots(extra_slot)},
            "lang": language,
        }
        if body is not None:
            context |= {"body_html": body.html, "body_text": body.text}
        elif template in BODY_TEMPLATES:
            # The merge fields become the same slot markers as the template's own links.
            merge = {
                "name": recipient["name"],
                "email": recipient["to_address"],
                "unsubscribe_url": recipient["unsubscribe_url"],
                "preferences_url": recipient["preferences_url"],
            }
            parts = campaign_body.render(values, merge)
            context |= {"body_html": parts.html, "body_text": parts.text}
        if layout is None:
            text = _render(f"{template}.txt", context, language)
            html_text = _render(f"{template}.html", context, language)
        else:
            env = sandbox.environment(layout.sources(), language)
            _add_filters(env, language)
            text = _render(f"{layout.name}.txt", context, language, env)
            html_text = _render(f"{layout.name}.html", context, language, env)
        if list_mail:
            _check_footer(layout.name if layout else template, sender, text, html_text, recipient)
        if "<style" in html_text:
            html_text = _inline_css(html_text)
        try:
            text_chunks = _split(text, nonce)
            html_chunks = _split(html_text, nonce)
        except _SentinelClash:
            continue
        break
    else:  # pragma: no cover - needs three 80-bit coincidences in a row
        raise TemplateError("could not choose slot markers absent from the content")
    name_slot = f"{nonce}0{nonce}"
    nameless = None
    if named and (name_slot in text or name_slot in html_text):
        nameless = partial(
            _prepare,
            template,
            sender,
            subject,
            values,
            list_mail=list_mail,
            language=language,
            layout=layout,
            body=body,
            named=False,
        )

    # "=_" cannot occur in quoted-printable output, where "=" is always "=XX" or a soft break.
    boundary = "=_optout_" + secrets.token_hex(12)
    part_head = (
        'Content-Type: text/{kind}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    tail = [
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if list_mail else b"",
        _ascii_header_line("Feedback-ID", sender.feedback_id) if sender.feedback_id else b"",
        # RFC 3282: the language of the words Optout wrote; the HTML part says it in lang too.
        _ascii_header_line("Content-Language", language),
        b"MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode(),
        f"--{boundary}\r\n".encode(),
        part_head.format(kind="plain").encode(),
    ]
    return PreparedMessage(
        template=template,
        list_mail=list_mail,
        head_from=head_from,
        head_list_id=head_list_id,
        head_tail=b"".join(tail),
        text=text_chunks,
        html_part=html_chunks,
        html_open=f"--{boundary}\r\n{part_head.format(kind='html')}".encode(),
        boundary_close=f"--{boundary}--\r\n".encode(),
        extra_names=tuple(extra_names),
        nameless=nameless,
    )


def _render(
    name: str,
    context: Mapping[str, Any],
    language: str = SOURCE_LANGUAGE,
    tenant_env: jinja2.Environment | None = None,
) -> str:
    try:
        if isinstance(tenant_env, sandbox.BudgetSandbox):
            return sandbox.render(tenant_env, name, context)
        return _environment(language).get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        if tenant_env is not None:  # the sandbox's loader: only the tenant's own names
            raise TemplateError(
                f"{name}: {exc.name!r} is not a template of this tenant", field="template"
            ) from exc
        raise TemplateError(f"no email template named {exc.name!r}", field="template") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = (exc.filename or exc.name or name).removeprefix(sandbox.SOURCE_PREFIX)
        where = Path(where).name if tenant_env is None else where
        raise TemplateError(f"{where} line {exc.lineno}: {exc.message}") from exc
    except (
        jinja2.TemplateError,
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        raise TemplateError(f"{_template_location(exc, name)}: {exc}") from exc


def _template_location(exc: BaseException, name: str) -> str:
    """'file.html line N' from the innermost traceback frame inside our templates directory."""
    # jinja2 rewrites tracebacks so that template frames carry the template's file and line.
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(sandbox.SOURCE_PREFIX):
            return f"{frame.filename.removeprefix(sandbox.SOURCE_PREFIX)} line {frame.lineno}"
        path = Path(frame.filename)
        if path.suffix in (".html", ".txt") and path.parent == TEMPLATE_DIR:
            return f"{path.name} line {frame.lineno}"
    return name


def _check_footer(
    template: str, sender: Sender, text: str, html_text: str, recipient: Mapping[str, str]
) -> None:
    """List mail carries the postal address and both links in both parts (STANDARDS 26, 32)."""
    address_html = str(markupsafe.escape(sender.postal_address))
    for part, rendered, address in (
        ("txt", text, sender.postal_address),
        ("html", html_text, address_html),
    ):
        missing = [
            what
            for what, needle in (
                ("postal address", address),
                ("unsubscribe link", recipient["unsubscribe_url"]),
                ("preference-centre link", recipient["preferences_url"]),
            )
            if needle not in rendered
        ]
        if missing:
            raise TemplateError(
                f"{template}.{part} lacks the required footer ({', '.join(missing)}); "
                "include _footer." + part
            )


def _inline_css(html_text: str) -> str:
    try:
        return css_inline.inline(html_text, load_remote_stylesheets=False)
    except ValueError as exc:  # css_inline.InlineError
        raise TemplateError(f"cannot inline the template's CSS: {exc}") from exc


class _SentinelClash(Exception):
    """The sentinel occurred in the content itself."""


def _split(rendered: str, nonce: str) -> _Chunks:
    """Pre-encode static lines to quoted-printable; keep slot lines as format templates.

    Quoted-printable is line-local (every hard line break resets the encoder), so encoding
    static lines once and slot lines per recipient gives the same bytes as encoding it all.
    """
    rendered = rendered.replace("\r\n", "\n").replace("\r", "\n")
    if not rendered.endswith("\n"):
        rendered += "\n"  # so each chunk ends in CRLF and b2a_qp picks CRLF soft breaks
    chunks: list[bytes | str] = []
    static: list[str] = []
    dynamic: list[str] = []

    def flush_static() -> None:
        if static:
            chunks.append(_qp("".join(static)))
            static.clear()

    def flush_dynamic() -> None:
        if dynamic:
            chunks.append("".join(dynamic))
            dynamic.clear()

    for line in rendered.splitlines(keepends=False):
        line += "\r\n"
        if nonce in line:
            flush_static()
            dynamic.append(_slot_template(line, nonce))
        else:
            flush_dynamic()
            static.append(line)
    flush_static()
    flush_dynamic()
    return tuple(chunks)


def _slot_template(line: str, nonce: str) -> str:
    """``line`` as a format template: each ``{nonce}N{nonce}`` becomes ``{N}``, literal braces
    are doubled. A string split, not a regex built from the nonce: a pattern per message would
    fill the re module's cache with patterns never used again."""
    pieces = line.split(nonce)
    # Text, slot number, text, slot number, ..., text: any other shape is the nonce in content.
    if len(pieces) % 2 == 0 or not all(n.isascii() and n.isdigit() for n in pieces[1::2]):
        raise _SentinelClash
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append("{" + piece + "}")
        else:
            out.append(piece.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


# --- per-recipient rendering -------------------------------------------------------------------


def _qp(text: str) -> bytes:
    return b2a_qp(text.encode("utf-8"), istext=True)


def _append_part(out: list[bytes], chunks: _Chunks, values: list[str]) -> None:
    for chunk in chunks:
        if isinstance(chunk, bytes):
            out.append(chunk)
        else:
            out.append(b2a_qp(chunk.format(*values).encode("utf-8"), istext=True))


def _slot_values(recipient: Recipient, extra_names: tuple[str, ...]) -> list[str]:
    """The slot values in _FIXED_SLOTS order, then the template's extra slots; all checked."""
    values = [
        _name_of(recipient),
        recipient.to_address,
        recipient.unsubscribe_url,
        recipient.preferences_url,
        recipient.mailto_unsubscribe,
    ]
    for name in extra_names:
        try:
            values.append(recipient.extra[name])
        except KeyError:
            raise InvalidInput(
                f"the template needs recipient.extra[{name!r}]", field=name
            ) from None
    if _CONTROL.search("".join(values)):
        raise HeaderInjection("a recipient value contains a line break or control character")
    return values


def _name_of(recipient: Recipient) -> str:
    """The name to greet; "" for none (a blank name is none: no "Hello ,")."""
    name = recipient.to_name or ""
    return name if name.strip() else ""


_date_cache: tuple[int, str] = (0, "")


def _now() -> str:
    # formatdate costs a few microseconds; one value per second is exact enough for Date.
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, localtime=False, usegmt=True))
    return _date_cache[1]


def _check_header_value(name: str, value: str, limit: int) -> None:
    if _CONTROL.search(value):
        raise HeaderInjection(field=name)
    if len(value) > limit:
        raise HeaderInjection(f"{name} is longer than {limit} characters", field=name)


def _ascii_header(name: str, value: str) -> bytes:
    _check_header_value(name, value, MAX_LINE - len(name) - 2)
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} must be ASCII", field=name) from None


def _ascii_header_line(name: str, value: str) -> bytes:
    return name.encode() + b": " + _ascii_header(name, value) + b"\r\n"


def _message_id(value: str) -> bytes:
    _check_header_value("Message-ID", value, MAX_ADDRESS)
    if not _MESSAGE_ID.fullmatch(value):
        raise InvalidInput("Message-ID must look like <left@right>", field="message_id")
    return value.encode("ascii")


def _checked_address(field_name: str, address: str) -> str:
    _check_header_value(field_name, address, MAX_ADDRESS)
    # Only what keeps the header well formed; mailer.addresses does the real validation.
    if not _ADDRESS.fullmatch(address):
        raise InvalidAddress(field=field_name)
    return address


def _to_header(address: str, name: str | None) -> bytes:
    address = _checked_address("to_address", address)
    if name:
        _check_header_value("to_name", name, MAX_NAME)
    if not (name and name.strip()):
        return f"To: {address}\r\n".encode()  # UTF-8 only for a UTF-8 local part
    return _fold_mailbox("To", name, address)


def _fold_mailbox(header: str, name: str, address: str) -> bytes:
    if _ATOMS.fullmatch(name) and "=?" not in name:
        return _fold_at_spaces(f"{header}: {name} <{address}>")
    if _RAW_PHRASE.fullmatch(name) and "=?" not in name:
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return _fold_at_spaces(f"{header}: {quoted} <{address}>")
    lines = _encoded_words(name)
    last = len(lines[-1]) + (len(header) + 2 if len(lines) == 1 else 0)
    if last + 3 + len(address) <= SOFT_LINE:
        lines[-1] = f"{lines[-1]} <{address}>"
    else:
        lines.append(f" <{address}>")
    return (f"{header}: " + "\r\n".join(lines) + "\r\n").encode()


def _from_subject_headers(sender: Sender, subject: str) -> bytes:
    _check_header_value("subject", subject, MAX_SUBJECT)
    if not subject:
        raise InvalidInput("the subject is empty", field="subject")
    _check_header_value("from_name", sender.from_name, MAX_NAME)
    address = _checked_address("from_address", sender.from_address)
    head_from = (
        _fold_mailbox("From", sender.from_name, address)
        if sender.from_name
        else f"From: {address}\r\n".encode("ascii")
    )
    if _RAW_PHRASE.fullmatch(subject) and "=?" not in subject:
        head_subject = _fold_at_spaces(f"Subject: {subject}")
    else:
        head_subject = ("Subject: " + "\r\n".join(_encoded_words(subject)) + "\r\n").encode()
    return head_from + head_subject


def _list_id_header(list_id: str) -> bytes:
    _check_header_value("list_id", list_id, MAX_NAME)
    phrase, bracket, ident = list_id.rpartition("<")
    if not bracket or not ident.endswith(">") or not _URI.fullmatch(ident[:-1]):
        raise InvalidInput("List-Id must end with <list.id.domain>", field="list_id")
    phrase = phrase.strip()
    if not phrase:
        return f"List-Id: <{ident}\r\n".encode("ascii")
    return _fold_mailbox("List-Id", phrase, ident[:-1])


def _list_unsubscribe(url: str, mailto: str) -> bytes:
    """The RFC 2369/8058 header: never folded or encoded inside <...> (STANDARDS 2, 4)."""
    if _CONTROL.search(url) or _CONTROL.search(mailto):
        raise HeaderInjection(field="unsubscribe_url")
    if not _unsubscribe_scheme_ok(url) or not _URI.fullmatch(url):
        raise InvalidInput(
            "the unsubscribe URL must be an ASCII https URL (http only for localhost)",
            field="unsubscribe_url",
        )
    head = f"List-Unsubscribe: <{url}>"
    if len(head) + 1 > MAX_LINE:  # room for the comma when the mailto goes on the next line
        raise InvalidInput("the unsubscribe URL is too long for a header", field="unsubscribe_url")
    if not mailto:
        return f"{head}\r\n".encode("ascii")
    mailto = _checked_address("mailto_unsubscribe", mailto)
    if len(head) + len(mailto) + 11 <= MAX_LINE:
        return f"{head}, <mailto:{mailto}>\r\n".encode("ascii")
    # Folding between the URIs is allowed; inside the brackets it is not.
    return f"{head},\r\n <mailto:{mailto}>\r\n".encode("ascii")


def _unsubscribe_scheme_ok(url: str) -> bool:
    """https (RFC 8058), or http to a loopback host: the same rule as OPTOUT_BASE_URL, so the
    local demo's http://127.0.0.1 links work while a public http link is refused."""
    if url.startswith("https://"):
        return True
    if not url.startswith("http://"):
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS


def _fold_at_spaces(line: str) -> bytes:
    """Fold a raw header line at existing spaces to keep lines near 78 octets; ASCII but for
    a UTF-8 local part of an address (RFC 6532), checked where the address is."""
    if len(line) <= SOFT_LINE:
        return (line + "\r\n").encode()
    out: list[str] = []
    current = ""
    for i, word in enumerate(line.split(" ")):
        if i and len(current) + 1 + len(word) > SOFT_LINE and current.strip():
            out.append(current)
            current = " " + word
        else:
            current = word if i == 0 else current + " " + word
    out.append(current)
    return ("\r\n".join(out) + "\r\n").encode()


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-encoded words, one per folded line (all but the first start with a space).

    Words split at character boundaries, so each decodes on its own, and preferably just after
    a space. RFC 2047 decoders drop the folding whitespace between words, so the result is
    exact there; Python's address parser (not its unstructured one) keeps it as a space, which
    then lands beside an existing space rather than inside a word.
    """
    if len(text.encode("utf-8")) <= _ENCODED_WORD_BYTES:
        return [_b_word(text)]  # the common case, without the per-character loop
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > _ENCODED_WORD_BYTES:
            cut = next((i for i in range(len(chunk) - 1, 0, -1) if chunk[i] == " "), None)
            carry = chunk[cut + 1 :] if cut is not None else []
            words.append(_b_word("".join(chunk[: len(chunk) - len(carry)])))
            chunk = carry
            size = len("".join(chunk).encode("utf-8"))
        chunk.append(char)
        size += width
    words.append(_b_word("".join(chunk)))
    return [words[0], *(" " + w for w in words[1:])]


def _b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="
