"""One typed Settings object, read from the environment; every key is in the README's table.

With the embedded database, missing secrets are generated once and kept in the data folder
(mode 0600). With DATABASE_URL they are required, since every machine must share them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import platformdirs

from mailer.errors import ConfigError
from mailer.tokens import Keyring

KEY_ID = re.compile(r"^[a-z0-9]{1,8}$")
MIN_SECRET_CHARS = 32
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
SECRETS_FILE = "secrets.env"


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    """Where outgoing mail goes: parsed from SMTP_URL."""

    host: str
    port: int
    use_tls: bool  # implicit TLS (smtps://)
    starttls: str  # "auto" (when offered), "require" or "off"
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    base_url: str
    secret_keys: tuple[tuple[str, bytes], ...] = field(repr=False)
    hash_key: bytes = field(repr=False)
    smtp: SmtpRelay | None = None

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def signing_key_id(self) -> str:
        return self.secret_keys[0][0]

    def keyring(self) -> Keyring:
        """The link-token and local-part-code keys (the first signs, all verify)."""
        return Keyring(self.secret_keys)

    def key_fingerprints(self) -> dict[str, str]:
        """Fingerprints (never the secrets) recorded in the database so machines must agree."""
        prints = {"hash_key": fingerprint(self.hash_key)}
        for key_id, secret in self.secret_keys:
            prints[f"secret_key:{key_id}"] = fingerprint(secret)
        return prints


def fingerprint(secret: bytes) -> str:
    # A keyed digest with a fixed label: it identifies the key without helping to guess it.
    return hmac.new(secret, b"optout-key-fingerprint-v1", hashlib.sha256).hexdigest()[:32]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; a wrong one raises ConfigError naming the variable."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL") or None
    if database_url is not None:
        _check_database_url(database_url)
    data_dir = Path(
        env.get("OPTOUT_DATA_DIR") or platformdirs.user_data_dir("optout", appauthor=False)
    ).expanduser()
    base_url = _parse_base_url(env.get("OPTOUT_BASE_URL") or "http://127.0.0.1:8080")
    raw_keys = env.get("OPTOUT_SECRET_KEYS") or None
    raw_hash = env.get("OPTOUT_HASH_KEY") or None
    if database_url is None and (raw_keys is None or raw_hash is None):
        stored = _stored_secrets(data_dir)
        raw_keys = raw_keys or stored["OPTOUT_SECRET_KEYS"]
        raw_hash = raw_hash or stored["OPTOUT_HASH_KEY"]
    if raw_keys is None:
        raise ConfigError(
            "OPTOUT_SECRET_KEYS is required with DATABASE_URL (every machine must share it)"
        )
    if raw_hash is None:
        raise ConfigError(
            "OPTOUT_HASH_KEY is required with DATABASE_URL (every machine must share it)"
        )
    smtp_url = env.get("SMTP_URL") or None
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        base_url=base_url,
        secret_keys=parse_secret_keys(raw_keys),
        hash_key=_parse_hash_key(raw_hash),
        smtp=parse_smtp_url(smtp_url) if smtp_url else None,
    )


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql:// (got another scheme)")
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError("DATABASE_URL names no host")


def _parse_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("OPTOUT_BASE_URL must be an absolute https:// URL")
    # RFC 8058 needs an https one-click URI; plain http only for a local demo or test.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(
            "OPTOUT_BASE_URL must use https:// (one-click unsubscribe requires it); "
            "http:// is allowed only for localhost"
        )
    if parts.query or parts.fragment:
        raise ConfigError("OPTOUT_BASE_URL must not have a query or fragment")
    return url.rstrip("/")


def parse_secret_keys(raw: str) -> tuple[tuple[str, bytes], ...]:
    """`id:secret,id:secret`; the first pair signs, all verify."""
    keys: list[tuple[str, bytes]] = []
    for item in raw.split(","):
        key_id, sep, secret = item.strip().partition(":")
        if not sep or not KEY_ID.match(key_id):
            raise ConfigError(
                "OPTOUT_SECRET_KEYS must be id:secret pairs separated by commas, "
                "ids of 1-8 lowercase letters or digits"
            )
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"OPTOUT_SECRET_KEYS: the secret of key {key_id!r} is shorter than "
                f"{MIN_SECRET_CHARS} characters"
            )
        if any(key_id == known for known, _ in keys):
            raise ConfigError(f"OPTOUT_SECRET_KEYS: key id {key_id!r} appears twice")
        keys.append((key_id, secret.encode()))
    return tuple(keys)


def _parse_hash_key(raw: str) -> bytes:
    if len(raw) < MIN_SECRET_CHARS:
        raise ConfigError(f"OPTOUT_HASH_KEY is shorter than {MIN_SECRET_CHARS} characters")
    return raw.encode()


def parse_smtp_url(url: str) -> SmtpRelay:
    """smtp://[user:pass@]host[:port][?starttls=auto|require|off] or smtps://..."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError("SMTP_URL must start with smtp:// or smtps://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP_URL has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ConfigError("SMTP_URL names no host")
    options = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
    unknown = set(options) - {"starttls"}
    if unknown:
        raise ConfigError(f"SMTP_URL has unknown options: {', '.join(sorted(unknown))}")
    starttls = options.get("starttls", "auto")
    if starttls not in ("auto", "require", "off"):
        raise ConfigError("SMTP_URL: starttls must be auto, require or off")
    implicit_tls = parts.scheme == "smtps"
    return SmtpRelay(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        use_tls=implicit_tls,
        starttls="off" if implicit_tls else starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _stored_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets for the embedded setup: generated on first run, kept in the data folder."""
    path = data_dir / SECRETS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        generated = (
            f"OPTOUT_SECRET_KEYS=k1:{secrets.token_urlsafe(32)}\n"
            f"OPTOUT_HASH_KEY={secrets.token_urlsafe(32)}\n"
        )
        # O_EXCL: when two processes start at once, the second reads the first one's file.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(generated)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only (chmod 600)")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    for name in ("OPTOUT_SECRET_KEYS", "OPTOUT_HASH_KEY"):
        if not values.get(name):
            raise ConfigError(f"{path} lacks {name}")
    return values
