"""Apache James's notice (RemoteDelivery's bounce, James 2.x and 3.x): "Hi. This is the James
mail server at <host>." ... "Sorry it didn't work out.  Below I include the list of recipients
and the reason why I was unable to deliver your message." then the failed addresses, one a
line, and the remote server's reply or James's own error under them."""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import ADDRESS, Mention

_MARK = re.compile(r"This is the James mail server at", re.I)
_BLOCK = re.compile(
    r"Sorry it didn't work out\.(?:\s+Below\s+I include the list of recipients and the reason"
    r" why I was unable to deliver\s+your message\.)?[ \t]*\n[ \t]*\n"
    r"(?P<block>.+?)(?:\n[ \t]*\n|\Z)",
    re.I | re.S,
)
_ADDRESS_LINE = re.compile(rf"^\s*<?({ADDRESS.pattern})>?\s*$")


def read(text: str) -> list[Mention] | None:
    if not _MARK.search(text) or not (block := _BLOCK.search(text)):
        return None
    addresses: list[str] = []
    reasons: list[str] = []
    for line in block.group("block").splitlines():
        if match := _ADDRESS_LINE.match(line):
            addresses.append(match.group(1))
        else:
            reasons.append(line.strip())
    reason = "\n".join(reasons)  # James writes one error for all the addresses above it
    return [Mention(address, reason) for address in addresses] or None
