"""Lotus Notes / HCL Domino: "Your message ... was not delivered to: <address> because:
<reason>" (e.g. "User user@x (user@x) not listed in Domino Directory")."""

from __future__ import annotations

import re

from mailer.inbound.bounces.mentions import Mention, addresses_in

_BLOCK = re.compile(
    r"was not delivered to:\s*(?P<who>.+?)\s*because:\s*(?P<why>.+?)(?:\n\s*\n|\Z)", re.I | re.S
)


def read(text: str) -> list[Mention] | None:
    found: list[Mention] = []
    for block in _BLOCK.finditer(text):
        for address in addresses_in(block.group("who")):
            found.append(Mention(address, block.group("why")))
    return found or None
