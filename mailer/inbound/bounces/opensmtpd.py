"""OpenSMTPD's notice: "This is the MAILER-DAEMON, please DO NOT REPLY to this email." then
"An error has occurred while attempting to deliver a message for the following list of
recipients:" and one "user@x: <reply>" line each (smtpd/bounce.c)."""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import ADDRESS, Mention

_MARK = re.compile(r"This is the MAILER-DAEMON, please DO NOT REPLY", re.I)
_DELAYED = re.compile(r"Delivery to the following recipients was postponed|temporarily", re.I)
_LINE = re.compile(rf"^({ADDRESS.pattern}): (.+)$", re.M)


def read(text: str) -> list[Mention] | None:
    if not _MARK.search(text):
        return None
    delayed = bool(_DELAYED.search(text)) and "following list of recipients" not in text
    found = [Mention(m.group(1), m.group(2), delayed) for m in _LINE.finditer(text)]
    return found or None
