"""An aiosmtpd server that keeps MAIL and RCPT addresses exactly as they came on the wire.

aiosmtpd parses the path with the email package's header parser, which decodes RFC 2047
words and drops the quotes of a quoted local part: ``<"=?utf-8?q?x?="@example.org>`` becomes
``x@example.org``. An envelope address is not a header (RFC 5321 2.4: the local part must not
be changed in transit), so the catcher and the inbound server show and match the raw form.
"""

from __future__ import annotations

from aiosmtpd.smtp import SMTP

__all__ = ["RawEnvelopeSMTP", "address_as_sent"]

NULL_PATH = "<>"


def address_as_sent(path: str) -> str:
    """The mailbox of an SMTP path as sent: angle brackets and any source route removed."""
    text = path.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
        if not text:
            return NULL_PATH
        if text.startswith("@"):  # RFC 5321 4.1.2 A-d-l, to be ignored: "@a,@b:user@c"
            text = text.partition(":")[2]
    elif text.startswith("<"):  # an unclosed bracket aiosmtpd let through
        text = text[1:]
    return text


class RawEnvelopeSMTP(SMTP):
    """aiosmtpd's SMTP whose envelope (mail_from, rcpt_tos, handler hooks) holds raw addresses.

    aiosmtpd still validates the syntax; only the accepted address's text is taken from the
    command line rather than from its decoded parse.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, rest = super()._getaddr(arg)
        if not address or rest is None:
            return address, rest  # malformed or empty: aiosmtpd's own replies
        used = arg.rstrip()
        if rest:
            used = used[: len(used) - len(rest)]
        return address_as_sent(used), rest
