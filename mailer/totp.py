"""Two-factor sign-in for staff: TOTP (RFC 6238, pyotp) with a QR code drawn here as SVG
(segno; no image service sees the secret), and one-time recovery codes.

Secrets are stored encrypted: AES-GCM under a key derived from OPTOUT_HASH_KEY for this purpose
alone (HKDF), the account id bound as associated data, so a secret copied onto another account
does not decrypt. A code is accepted for the current 30-second step or either neighbour; an
accepted step (or any earlier one) is never accepted again for that account.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time

import asyncpg
import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailer import audit, staff_sessions
from mailer.db import queries
from mailer.errors import InvalidInput

ISSUER = "Optout"
KEY_INFO = b"optout-totp-secrets-v1"
STEP = 30
RECOVERY_CODES = 10
_CODE = "0123456789"


class SecretBox:
    """Encrypts TOTP secrets (and the candidate secret of an enrolment form)."""

    def __init__(self, hash_key: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(hash_key)
        self._aead = AESGCM(key)

    def seal(self, account_id: int, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, secret.encode(), str(account_id).encode())

    def open(self, account_id: int, sealed: bytes) -> str | None:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], str(account_id).encode())
        except (InvalidTag, ValueError):
            return None
        return plain.decode()


def new_secret() -> str:
    return pyotp.random_base32()


def qr_svg(secret: str, email: str) -> str:
    """The enrolment QR code as an SVG document (no XML declaration, fit for inlining)."""
    uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", scale=4, xmldecl=False, svgns=True, title="QR code to enrol", nl=False
    )
    return out.getvalue().decode()


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (this one or a neighbour), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not all(c in _CODE for c in code):
        return None
    totp = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    current = int(moment // STEP)
    for step in (current, current - 1, current + 1):
        if secrets.compare_digest(totp.at(step * STEP), code):
            return step
    return None


async def check_code(
    conn: asyncpg.Connection, box: SecretBox, account_id: int, sealed: bytes, code: str
) -> bool:
    """True when ``code`` is right and its step was never accepted before (then it is used)."""
    secret = box.open(account_id, sealed)
    if secret is None:
        return False
    step = matching_step(secret, code)
    if step is None:
        return False
    used = await queries().staff.use_totp_step(conn, id=account_id, step=step)
    return used is not None


def _code_hash(code: str) -> bytes:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).digest()


def is_recovery_code(code: str) -> bool:
    return len(code.strip().replace("-", "")) == 10


async def use_recovery_code(conn: asyncpg.Connection, account_id: int, code: str) -> bool:
    found = await queries().staff.use_recovery_code(
        conn, account_id=account_id, code_hash=_code_hash(code)
    )
    return found is not None


async def enrol(
    conn: asyncpg.Connection,
    box: SecretBox,
    account_id: int,
    secret: str,
    code: str,
    *,
    keep_session: int | None,
) -> list[str]:
    """Store the secret once the person proved their app has it (a right code); new recovery
    codes, returned once; every other session of the account ends."""
    step = matching_step(secret, code)
    if step is None:
        raise InvalidInput("That code is not right; check the clock of your device.", field="code")
    q = queries().staff
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    async with conn.transaction():
        await q.set_totp(conn, id=account_id, secret=box.seal(account_id, secret))
        await q.use_totp_step(conn, id=account_id, step=step)
        await q.drop_recovery_codes(conn, account_id=account_id)
        for made in codes:
            await q.add_recovery_code(conn, account_id=account_id, code_hash=_code_hash(made))
        await staff_sessions.end_all(conn, account_id, keep=keep_session)
        await audit.record(
            conn,
            actor=f"account:{account_id}:self",
            action="staff.enrol_2fa",
            target_type="staff_account",
            target_id=account_id,
        )
    return [f"{c[:5]}-{c[5:]}" for c in codes]
