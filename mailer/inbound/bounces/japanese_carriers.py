"""NTT docomo, au (KDDI) and SoftBank notices: ISO-2022-JP (or Shift_JIS) text, often with
no DSN part, naming the address with a reply such as "550 Unknown user" or a Japanese reason
(宛先不明: address unknown; 容量超過: mailbox full). Recognised by the carriers' domains."""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import ADDRESS, Mention

_CARRIER = re.compile(
    r"@(?:[\w.-]+\.)?(?:docomo\.ne\.jp|ezweb\.ne\.jp|au\.com|softbank\.ne\.jp"
    r"|[a-z]\.vodafone\.ne\.jp|i\.softbank\.jp|disney\.ne\.jp)\b",
    re.I,
)


def read(text: str) -> list[Mention] | None:
    found: list[Mention] = []
    for match in ADDRESS.finditer(text):
        address = match.group(0)
        if not _CARRIER.search(address) or any(m.recipient == address for m in found):
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        after = text.find("\n\n", match.end())
        found.append(Mention(address, text[line_start : after if after != -1 else None]))
    return found or None
