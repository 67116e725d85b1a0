"""Statuses read from a notice's words where it gives no RFC 3463 code (issue 23's rules).

Each rule is a phrase real servers write and the status it means: unknown user 5.1.1,
mailbox full 5.2.2, message too big 5.3.4, policy block 5.7.1, expired 4.4.7 (final). A bare
SMTP reply code ("550 sorry, no mailbox here") with no phrase we know is its class's
X.0.0 ("other or undefined", RFC 3463 3.1). What was matched is kept as evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Derived", "derive_status", "most_specific"]


@dataclass(frozen=True, slots=True)
class Derived:
    """A status read from words, not given by the server."""

    status: str
    phrase: str  # the words that matched, as they stand in the notice
    final: bool  # the notice says delivery has stopped (expiry); else the class decides

    @property
    def specific(self) -> bool:
        """It names a cause, not just a class (X.0.0)."""
        return not self.status.endswith(".0.0")


# Order matters: an expiry notice often quotes the last temporary error, and a "mailbox full"
# notice may also say "user", so the more specific meanings are tried first.
_RULES: tuple[tuple[str, bool, re.Pattern[str]], ...] = (
    (
        "4.4.7",
        True,
        re.compile(
            r"(?:message|delivery) (?:has )?expired|retry time(?:out)? (?:not reached|exceeded)"
            r"|exceeded (?:the )?maximum (?:delivery|time)|too long in (?:the )?queue"
            r"|could not be delivered within \d+ (?:days|hours)|i'?m not going to try again"
            r"|delivery time expired|maximum delivery attempts|allowed queue period"
            r"|delivery failed \d+ attempts|could not deliver .{0,40} for \d+ days"
            r"|送信期限|配信期限",
            re.I,
        ),
    ),
    (
        "5.2.2",
        False,
        re.compile(
            r"mailbox (?:is )?full|over (?:disk )?quota|overquota|quota exceeded"
            r"|exceeding .{0,12}quota"
            r"|exceeded (?:the |his |her )?(?:storage |mailbox )?quota|mailbox size limit"
            r"|insufficient (?:storage|disk space)"
            r"|(?:mailbox|inbox) (?:has )?exceeded|not enough (?:storage|space)|user is over"
            r"|Postfach (?:ist )?voll|boîte (?:aux lettres )?(?:est )?pleine|buzón (?:está )?lleno"
            r"|容量(?:が|を)?(?:超過|オーバー|不足)|メールボックスがいっぱい",
            re.I,
        ),
    ),
    (
        "5.3.4",
        False,
        re.compile(
            r"message (?:is )?too (?:big|large)|message size exceeds|size limit exceeded"
            r"|exceeds (?:the )?(?:maximum|size) (?:message )?size|message length exceeds"
            r"|メッセージ(?:の)?サイズ",
            re.I,
        ),
    ),
    (
        "5.1.1",
        False,
        re.compile(
            r"user(?:name)? unknown|unknown (?:user|recipient|local[- ]part|address|mailbox)"
            r"|no such (?:user|mailbox|recipient|address|account)|(?:user|mailbox|recipient"
            r"|address|account|addressee) (?:does not|doesn't|did not) exist|not a valid (?:user"
            r"|mailbox|recipient)|invalid (?:recipient|mailbox|address)|recipient (?:address )?"
            r"rejected|recipient name is not recognized|not listed in (?:the )?(?:domino )?"
            r"(?:public )?directory|mailbox (?:not found|unavailable|is disabled)|user not found"
            r"|address (?:not found|rejected)|no mailbox here|account (?:has been )?"
            r"(?:disabled|deactivated|closed|suspended)|this account is not allowed|"
            r"(?:is|are) not a valid user|not our customer|unrouteable address|"
            r"did not (?:exactly )?match an? .{0,30}address|no matches to nameserver query|"
            r"(?:does not|doesn't) have an? .{0,30}account|"
            r"Benutzer unbekannt|unbekannte(?:r)? (?:Empfänger|Benutzer)|existiert nicht"
            r"|utilisateur inconnu|destinataire inconnu|n'existe pas|usuario desconocido"
            r"|no existe|宛先(?:が)?(?:不明|見つかりません)|存在しません|ユーザ(?:ー)?不明",
            re.I,
        ),
    ),
    (
        "5.7.1",
        False,
        re.compile(
            r"spam|blocked|blacklist|block ?list|denied by policy|policy (?:violation|rejection"
            r"|reasons)|rejected (?:for|due to) policy|not authori[sz]ed|access denied|refused by"
            r"|content rejected|message rejected|rejected by (?:the )?(?:recipient|filter)"
            r"|not accepting mail from"
            r"|受信拒否|拒否",
            re.I,
        ),
    ),
)
# Beyond the five: what a notice says of the destination rather than the mailbox.
_MORE_RULES: tuple[tuple[str, bool, re.Pattern[str]], ...] = (
    (
        "5.1.2",
        False,
        re.compile(
            r"unknown host|host (?:or domain name )?not found|domain not found|no such domain"
            r"|name service error|unrouteable domain",
            re.I,
        ),
    ),
    ("5.4.6", False, re.compile(r"too many hops|mail loop|routing loop|loops back", re.I)),
)
# Said by nearly every notice, so only when nothing more precise matched: a permanent failure
# whose cause is not given (RFC 3463 3.1: X.0.0, other or undefined status).
_UNDEFINED = re.compile(
    r"permanent (?:fatal )?errors?|permanent failure|delivery to the following recipients failed"
    r"|failed permanently|did not reach the following recipient"
    r"|could not be delivered|undeliverable|was not delivered|not delivered to|has been returned"
    r"|unzustellbar|non remis|no se pudo entregar",
    re.I,
)
# A reply code standing alone at a line's or phrase's start, with no enhanced code after it.
_BARE_REPLY = re.compile(r"(?:^|[\s:(\[])([45][0-5]\d)(?:[ :-](?! ?[245]\.\d)|$)", re.M)


def derive_status(text: str | None) -> Derived | None:
    """The status a notice's words mean, or None when they say nothing we can stand behind."""
    if not text:
        return None
    for status, final, pattern in _RULES:
        if match := pattern.search(text):
            status = _class_of_reply(text, status)
            return Derived(status, " ".join(match.group(0).split()), final)
    for status, final, pattern in _MORE_RULES:
        if match := pattern.search(text):
            return Derived(_class_of_reply(text, status), " ".join(match.group(0).split()), final)
    if match := _BARE_REPLY.search(text):
        code = match.group(1)
        return Derived(f"{code[0]}.0.0", code, False)
    if match := _UNDEFINED.search(text):
        return Derived("5.0.0", " ".join(match.group(0).split()), False)
    return None


def _class_of_reply(text: str, status: str) -> str:
    """A 4xx reply keeps its temporary class: "450 user unknown" is 4.1.1, not 5.1.1."""
    match = _BARE_REPLY.search(text)
    if match and match.group(1)[0] == "4" and status[0] == "5":
        return "4" + status[1:]
    return status


def most_specific(*texts: str | None) -> Derived | None:
    """The first derivation that names a cause, else the first at all, over texts from the
    closest to the address to the whole notice."""
    found = [d for d in map(derive_status, texts) if d is not None]
    return next((d for d in found if d.specific), found[0] if found else None)
