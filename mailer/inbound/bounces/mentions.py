"""What a family reader returns: a failed recipient and the words about it."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ADDRESS", "Mention", "addresses_in"]

# An address as notices print it: bare, in <>, or after "SMTP=" (X.400 gateways).
ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)


@dataclass(frozen=True, slots=True)
class Mention:
    """One recipient a notice reports as failed, with the text that explains it."""

    recipient: str  # "" when the notice names nobody (the VERP address names the delivery)
    context: str  # where a status or its words are read from
    delayed: bool = False  # the notice is a warning: delivery is still being tried


def addresses_in(text: str) -> list[str]:
    """The distinct addresses in a piece of text, in order."""
    seen: dict[str, None] = {}
    for match in ADDRESS.finditer(text):
        address = match.group(0).strip(".-")
        if address[:5].upper() == "SMTP=":  # X.400 gateways: "dda:SMTP=user@example.com"
            address = address[5:]
        seen.setdefault(address, None)
    return list(seen)
