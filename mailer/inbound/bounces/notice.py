"""A failure notice that names no recipient (InterScan, Jetmail, some appliances): its
subject or sender says it is a bounce, and the VERP address it came to names the delivery.
Only the words say what happened; with none we know, it stays unparsed."""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import Mention

_SUBJECT = re.compile(
    r"undeliver|delivery (?:status notification|failure|failed|has failed)|mail delivery failed"
    r"|returned mail|mail error|could not be delivered|non[- ]?delivery|failure notice"
    r"|unzustellbar|non remis|no se puede entregar|配信(?:不能|エラー)|エラー",
    re.I,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|ndr@|<>|mail delivery", re.I)


def read(subject: str, sender: str, text: str) -> list[Mention] | None:
    if not (_SUBJECT.search(subject) or _DAEMON.search(sender)):
        return None
    return [Mention("", text)]
