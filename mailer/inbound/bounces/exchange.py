"""Microsoft Exchange 2003/2007/2010 and Office 365 plain-text non-delivery reports.

Exchange 2003 writes "did not reach the following recipient(s):" then one paragraph per
recipient ("user@x on <date>" and the reason, often "<host #5.1.1>"); Exchange 2007 and later
and Office 365 write "Delivery has failed to these recipients or groups:" and, further down,
"Remote Server returned '550 5.1.1 ...'".
"""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import Mention, addresses_in

_START = re.compile(
    r"did not reach the following recipient\(s\):|Delivery has failed to these recipients or"
    r" groups:|Your message (?:to|wasn't delivered to) .{0,200}? (?:couldn't be delivered|"
    r"because)|The following recipient\(s\) (?:could not be reached|cannot be reached):",
    re.I | re.S,
)
_END = re.compile(r"\n(?:Diagnostic information for administrators|Original message headers"
                  r"|-{3,}|_{3,})", re.I)  # fmt: skip
_REMOTE = re.compile(r"Remote Server returned '([^']*)'", re.I)


def read(text: str) -> list[Mention] | None:
    start = _START.search(text)
    if start is None:
        return None
    end = _END.search(text, start.end())
    section = text[start.start() : end.start() if end else len(text)]
    tail = text[start.start() :]
    remote = _REMOTE.search(tail)
    diagnostics = remote.group(1) if remote else ""
    mentions = []
    for address in addresses_in(section[len(start.group(0)) :] or section):
        # Each recipient's paragraph, plus the administrators' section for its reply code.
        at = section.find(address)
        paragraph = section[at : section.find("\n\n", at) if "\n\n" in section[at:] else None]
        mentions.append(Mention(address, f"{paragraph}\n{diagnostics}"))
    if not mentions and section.strip() != start.group(0):
        # Exchange 5.5's MTA may name the recipient by display name alone ("Jane Doe on
        # <date>"): the report is still about the delivery the VERP address names.
        return [Mention("", f"{section}\n{diagnostics}")]
    return mentions or None
