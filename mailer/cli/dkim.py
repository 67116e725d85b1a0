"""`optout dkim generate` and `optout dkim records`: make a tenant's signing key, and print the
DNS records to publish for a tenant's sender domain (DKIM, SPF, DMARC, MX)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg

from mailer import tenants
from mailer.cli.support import Commands, with_db
from mailer.errors import InvalidInput
from mailer.sending import dkim

KEY_TYPES = ("rsa", "ed25519")


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser("dkim", help="DKIM keys and DNS records").add_subparsers(
        metavar="ACTION"
    )
    add = group.add_parser("generate", help="write a new private key; print its DNS value")
    add.add_argument("path", type=Path, help="where to write the PEM file (never overwritten)")
    add.add_argument("--type", choices=KEY_TYPES, default="rsa")
    add.add_argument("--bits", type=int, default=2048, help="RSA key size (2048 or more)")
    add.set_defaults(run=_generate)
    add = group.add_parser("records", help="the DNS records a tenant's sender domain needs")
    add.add_argument("--tenant", required=True)
    add.set_defaults(run=with_db(_records))


def _generate(_settings: object, args: argparse.Namespace) -> int:
    if args.type == "rsa" and args.bits < 2048:
        raise InvalidInput("--bits: RSA keys for DKIM must have 2048 bits or more", field="bits")
    if args.type == "rsa":
        pem = dkim.generate_rsa_key_pem(args.bits)
        record = dkim.public_key_dns_record(pem)
    else:
        pem = dkim.generate_ed25519_key_pem()
        record = dkim.ed25519_dns_record(pem)
    path: Path = args.path
    try:
        # O_EXCL: an existing key is never replaced (mail signed with it would stop verifying).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists already; choose another path", field="path") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}", field="path") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    print(f"wrote {path} (mode 0600)")
    print(f"publish as TXT at <selector>._domainkey.<domain>: {record}")
    return 0


async def _records(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    domain = tenant["sender_domain"]
    from_domain = tenant["sender_address"].rpartition("@")[2].lower()
    lines = [f"; DNS records for {domain} (tenant {tenant['slug']})"]
    keys = (
        (tenant["dkim_selector"], tenant["dkim_key_path"], dkim.public_key_dns_record),
        (tenant["dkim_ed25519_selector"], tenant["dkim_ed25519_key_path"], dkim.ed25519_dns_record),
    )
    missing = True
    for selector, path, record_of in keys:
        if selector and path:
            try:
                pem = await asyncio.to_thread(Path(path).read_bytes)
            except OSError as exc:
                raise InvalidInput(f"cannot read the DKIM key {path}: {exc.strerror}") from None
            lines.append(f'{selector}._domainkey.{domain}. TXT "{_quoted(record_of(pem))}"')
            missing = False
    if missing:
        lines.append("; no DKIM key: set one with `optout tenant update --dkim-selector ...`")
    lines += [
        f'{domain}. TXT "v=spf1 include:YOUR-RELAY-SPF-DOMAIN -all"',
        # DMARC is looked up at the From address's domain (README, DNS for each sender
        # domain); a record at its organisational domain covers it too.
        f'_dmarc.{from_domain}. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}"',
        f"{domain}. MX 10 YOUR-INBOUND-HOST.  ; where `optout inbound` listens on port 25",
    ]
    print("\n".join(lines))
    return 0


def _quoted(value: str) -> str:
    """A TXT value over 255 characters is published as several strings (RFC 7208 3.3)."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
    return '" "'.join(chunks)
