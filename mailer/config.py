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
from mailer.event_settings import EventSettings, parse_cidrs
from mailer.inbound_settings import InboundSettings, load_inbound_settings
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
class SmtpTimeouts:
    """Seconds the SMTP client waits at each stage: RFC 5321 4.5.3.2's minimums by default
    (STANDARDS 54). A stage that passes its time drops the connection; the mail is retried."""

    greeting: float = 300.0  # connect and the 220 greeting
    mail: float = 300.0  # the reply to MAIL FROM
    rcpt: float = 300.0  # the reply to each RCPT TO
    data_init: float = 120.0  # the 354 reply to DATA
    data_block: float = 180.0  # each block of the message to leave the send buffer
    data_end: float = 600.0  # the reply to the final "."


@dataclass(frozen=True, slots=True)
class MailerSettings:
    """How the campaign worker sends: pool, rates, leases, retries (README, configuration)."""

    pool_size: int = 4  # persistent SMTP connections per relay and worker process
    smtp_timeout: float = 300.0  # per SMTP command (RFC 5321 4.5.3.2: 5 minutes minimum)
    per_second: float = 50.0  # the relay's budget shared by every worker (Postgres)
    per_hour: int = 100_000
    batch_size: int = 200  # the most deliveries one claim takes
    lease_seconds: float = 60.0  # a claim's lease; renewed while sending
    poll_seconds: float = 5.0  # idle workers look for work this often (NOTIFY wakes sooner)
    # RFC 5321 4.5.4.1: retry no sooner than 30 minutes, give up after 4-5 days.
    retry_schedule: tuple[float, ...] = (1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
    give_up_after: float = 4 * 86_400.0
    pause_error_rate: float = 0.2  # auto-pause a campaign whose failures pass this share
    pause_min_attempts: int = 100  # ... once it has at least this many results
    allow_unsigned: bool = False  # local development only: send campaigns without DKIM
    helo_name: str = "localhost"
    fallbacks: tuple[SmtpRelay, ...] = ()  # relays that take over when SMTP_URL keeps failing
    smtp_timeouts: SmtpTimeouts = field(default_factory=lambda: SmtpTimeouts())


@dataclass(frozen=True, slots=True)
class WebLimits:
    """How long the web face waits for a slow client (README: configuration)."""

    header_timeout: float = 10.0  # the request line and headers, from connect or last answer
    body_timeout: float = 30.0  # a body, from its headers
    upload_min_rate: float = 10 * 1024.0  # bytes/s a body must average once past body_timeout


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """The installation's one OpenID Connect issuer for staff sign-in (issue 24 item 5)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)  # never in a log line or a repr
    # Provider amr/acr values that count as a second factor (then Optout's TOTP is not asked).
    second_factor: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StaffSettings:
    """Staff accounts and their sign-in (issue 24; README: configuration)."""

    invite_seconds: float = 72 * 3600.0  # an invitation link's life
    password_hashes: int = 2  # Argon2 hashes at once per web process; beyond: 429
    session_idle: float = 30 * 60.0
    session_max: float = 12 * 3600.0
    # The workspace's old sign-in by API token, for one release after upgrading.
    token_signin: bool = False
    mail_from: str | None = None  # the installation's sender of staff mail
    # The installation's DKIM key for staff mail (d= the sender's domain); unsigned when unset.
    dkim_selector: str | None = None
    dkim_key_path: str | None = None
    # Admins and compliance staff must have two-factor sign-in before the workspace opens.
    totp_required: bool = False
    oidc: OidcSettings | None = None  # single sign-on, when OPTOUT_OIDC_ISSUER is set


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    base_url: str
    secret_keys: tuple[tuple[str, bytes], ...] = field(repr=False)
    hash_key: bytes = field(repr=False)
    smtp: SmtpRelay | None = None
    mailer: MailerSettings = field(default_factory=lambda: MailerSettings())
    inbound: InboundSettings = field(default_factory=lambda: InboundSettings())
    # The consent journal (mailer/journal.py); None: nothing is journalled (tests, libraries).
    journal_dir: Path | None = None
    web: WebLimits = field(default_factory=lambda: WebLimits())
    staff: StaffSettings = field(default_factory=lambda: StaffSettings())
    events: EventSettings = field(default_factory=lambda: EventSettings())

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
    journal_dir = _journal_dir(env, database_url, data_dir)
    smtp_url = env.get("SMTP_URL") or None
    smtp = parse_smtp_url(smtp_url) if smtp_url else None
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        base_url=base_url,
        secret_keys=parse_secret_keys(raw_keys),
        hash_key=_parse_hash_key(raw_hash),
        smtp=smtp,
        mailer=_mailer_settings(env, smtp, base_url),
        inbound=load_inbound_settings(env),
        journal_dir=journal_dir,
        web=WebLimits(
            header_timeout=_number(env, "OPTOUT_WEB_HEADER_TIMEOUT", 10.0, 0.1, 3600),
            body_timeout=_number(env, "OPTOUT_WEB_BODY_TIMEOUT", 30.0, 0.1, 3600),
            upload_min_rate=_number(env, "OPTOUT_WEB_UPLOAD_MIN_RATE", 10 * 1024.0, 1, 10**9),
        ),
        staff=_staff_settings(env),
        events=_event_settings(env),
    )


def _staff_settings(env: Mapping[str, str]) -> StaffSettings:
    d = StaffSettings()
    mail_from = (env.get("OPTOUT_STAFF_MAIL_FROM") or "").strip() or None
    if mail_from is not None and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", mail_from):
        raise ConfigError(f"OPTOUT_STAFF_MAIL_FROM must be an email address (got {mail_from!r})")
    selector = (env.get("OPTOUT_STAFF_DKIM_SELECTOR") or "").strip() or None
    key_path = (env.get("OPTOUT_STAFF_DKIM_KEY_PATH") or "").strip() or None
    if (selector is None) != (key_path is None):
        raise ConfigError("OPTOUT_STAFF_DKIM_SELECTOR and OPTOUT_STAFF_DKIM_KEY_PATH go together")
    if selector is not None and mail_from is None:
        raise ConfigError("OPTOUT_STAFF_DKIM_SELECTOR needs OPTOUT_STAFF_MAIL_FROM")
    if selector is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", selector):
        raise ConfigError(f"OPTOUT_STAFF_DKIM_SELECTOR is not a DKIM selector (got {selector!r})")
    if key_path is not None and not Path(key_path).is_file():
        raise ConfigError(f"OPTOUT_STAFF_DKIM_KEY_PATH is not a file (got {key_path!r})")
    hashes = _number(env, "OPTOUT_PASSWORD_HASHES", float(d.password_hashes), 1, 64)
    if not hashes.is_integer():
        raise ConfigError(f"OPTOUT_PASSWORD_HASHES must be a whole number (got {hashes:g})")
    return StaffSettings(
        invite_seconds=_number(env, "OPTOUT_STAFF_INVITE_HOURS", 72, 1, 24 * 30) * 3600.0,
        password_hashes=int(hashes),
        session_idle=_number(env, "OPTOUT_SESSION_IDLE_MINUTES", 30, 1, 24 * 60) * 60.0,
        session_max=_number(env, "OPTOUT_SESSION_MAX_HOURS", 12, 1, 24 * 30) * 3600.0,
        token_signin=_flag(env, "OPTOUT_TOKEN_SIGNIN"),
        mail_from=mail_from,
        dkim_selector=selector,
        dkim_key_path=key_path,
        totp_required=_flag(env, "OPTOUT_STAFF_TOTP_REQUIRED"),
        oidc=_oidc_settings(env),
    )


def _oidc_settings(env: Mapping[str, str]) -> OidcSettings | None:
    """OPTOUT_OIDC_*: all three of issuer, client id and secret, or none of them."""
    issuer = (env.get("OPTOUT_OIDC_ISSUER") or "").strip().rstrip("/")
    client_id = (env.get("OPTOUT_OIDC_CLIENT_ID") or "").strip()
    secret = env.get("OPTOUT_OIDC_CLIENT_SECRET") or ""
    if not (issuer or client_id or secret):
        return None
    if not (issuer and client_id and secret):
        raise ConfigError(
            "OPTOUT_OIDC_ISSUER, OPTOUT_OIDC_CLIENT_ID and OPTOUT_OIDC_CLIENT_SECRET go together"
        )
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError("OPTOUT_OIDC_ISSUER must be an https:// URL without query or fragment")
    # An http issuer could be impersonated by anyone on the path: a local provider only.
    if parts.scheme == "http" and not (
        parts.hostname in LOOPBACK_HOSTS and _flag(env, "OPTOUT_OIDC_ALLOW_HTTP_LOOPBACK")
    ):
        raise ConfigError(
            "OPTOUT_OIDC_ISSUER must use https:// (http:// only for a provider on localhost "
            "with OPTOUT_OIDC_ALLOW_HTTP_LOOPBACK=1, for development)"
        )
    values = (env.get("OPTOUT_OIDC_SECOND_FACTOR") or "").split(",")
    return OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=secret,
        second_factor=frozenset(value.strip() for value in values if value.strip()),
    )


def _event_settings(env: Mapping[str, str]) -> EventSettings:
    """OPTOUT_EVENTS_*: delivery of events to tenants' endpoints (docs/webhooks.md)."""
    d = EventSettings()

    def seconds(name: str, default: float) -> float:
        return _duration(name, env[name]) if env.get(name) else default

    return EventSettings(
        retry_for_seconds=seconds("OPTOUT_EVENTS_RETRY_FOR", d.retry_for_seconds),
        backoff_seconds=seconds("OPTOUT_EVENTS_BACKOFF", d.backoff_seconds),
        timeout_seconds=seconds("OPTOUT_EVENTS_TIMEOUT", d.timeout_seconds),
        concurrency=int(_number(env, "OPTOUT_EVENTS_CONCURRENCY", d.concurrency, 1, 100)),
        lease_seconds=seconds("OPTOUT_EVENTS_LEASE", d.lease_seconds),
        poll_seconds=seconds("OPTOUT_EVENTS_POLL", d.poll_seconds),
        batch_size=int(_number(env, "OPTOUT_EVENTS_BATCH", d.batch_size, 1, 10_000)),
        allow_cidrs=parse_cidrs(
            "OPTOUT_EVENTS_ALLOW_CIDRS", env.get("OPTOUT_EVENTS_ALLOW_CIDRS", "")
        ),
        allow_http_loopback=_flag(env, "OPTOUT_EVENTS_ALLOW_HTTP_LOOPBACK"),
        in_worker=_flag(env, "OPTOUT_EVENTS_IN_WORKER")
        if env.get("OPTOUT_EVENTS_IN_WORKER")
        else True,
    )


def _journal_dir(env: Mapping[str, str], database_url: str | None, data_dir: Path) -> Path:
    """OPTOUT_JOURNAL_DIR: required with DATABASE_URL; by default in the user's state folder.
    Never inside OPTOUT_DATA_DIR, which a restore of the embedded database brings back."""
    raw = env.get("OPTOUT_JOURNAL_DIR") or None
    if raw is None and database_url is not None:
        raise ConfigError(
            "OPTOUT_JOURNAL_DIR is required with DATABASE_URL (a folder outside the database "
            "backups, where opt-outs and erasures are journalled)"
        )
    journal_dir = Path(
        raw or Path(platformdirs.user_state_dir("optout", appauthor=False)) / "journal"
    ).expanduser()
    inside = journal_dir.resolve()
    if inside == data_dir.resolve() or data_dir.resolve() in inside.parents:
        raise ConfigError(
            f"OPTOUT_JOURNAL_DIR: {journal_dir} is inside OPTOUT_DATA_DIR; keep the journal "
            "apart from the data a restore brings back"
        )
    return journal_dir


def _mailer_settings(
    env: Mapping[str, str], smtp: SmtpRelay | None, base_url: str
) -> MailerSettings:
    """OPTOUT_* settings of the sending worker; each wrong value names its variable."""
    d = MailerSettings()
    allow_unsigned = _flag(env, "OPTOUT_ALLOW_UNSIGNED")
    if allow_unsigned and smtp is not None and smtp.host not in LOOPBACK_HOSTS:
        raise ConfigError(
            "OPTOUT_ALLOW_UNSIGNED is for local development: SMTP_URL must point at localhost"
        )
    schedule = env.get("OPTOUT_RETRY_SCHEDULE")
    return MailerSettings(
        pool_size=int(_number(env, "OPTOUT_SMTP_POOL_SIZE", d.pool_size, 1, 100)),
        smtp_timeout=_number(env, "OPTOUT_SMTP_TIMEOUT", d.smtp_timeout, 0.1, 3600),
        per_second=_number(env, "OPTOUT_RELAY_PER_SECOND", d.per_second, 0.01, 100_000),
        per_hour=int(_number(env, "OPTOUT_RELAY_PER_HOUR", d.per_hour, 1, 10**9)),
        batch_size=int(_number(env, "OPTOUT_BATCH_SIZE", d.batch_size, 1, 10_000)),
        lease_seconds=_number(env, "OPTOUT_LEASE_SECONDS", d.lease_seconds, 1, 3600),
        poll_seconds=_number(env, "OPTOUT_POLL_SECONDS", d.poll_seconds, 0.05, 3600),
        retry_schedule=(
            tuple(_duration("OPTOUT_RETRY_SCHEDULE", p) for p in schedule.split(","))
            if schedule
            else d.retry_schedule
        ),
        give_up_after=(
            _duration("OPTOUT_GIVE_UP_AFTER", env["OPTOUT_GIVE_UP_AFTER"])
            if env.get("OPTOUT_GIVE_UP_AFTER")
            else d.give_up_after
        ),
        pause_error_rate=_number(env, "OPTOUT_PAUSE_ERROR_RATE", d.pause_error_rate, 0, 1),
        pause_min_attempts=int(
            _number(env, "OPTOUT_PAUSE_MIN_ATTEMPTS", d.pause_min_attempts, 1, 10**9)
        ),
        allow_unsigned=allow_unsigned,
        helo_name=env.get("OPTOUT_HELO_NAME") or _helo_from(base_url) or d.helo_name,
        fallbacks=_fallbacks(env.get("OPTOUT_SMTP_FALLBACK_URLS") or ""),
        smtp_timeouts=_smtp_timeouts(env),
    )


def _smtp_timeouts(env: Mapping[str, str]) -> SmtpTimeouts:
    """OPTOUT_SMTP_TIMEOUT_<STAGE>: GREETING, MAIL, RCPT, DATA_INIT, DATA_BLOCK, DATA_END."""
    d = SmtpTimeouts()
    return SmtpTimeouts(
        **{
            stage: _number(
                env, f"OPTOUT_SMTP_TIMEOUT_{stage.upper()}", getattr(d, stage), 0.1, 3600
            )
            for stage in SmtpTimeouts.__dataclass_fields__
        }
    )


def _fallbacks(raw: str) -> tuple[SmtpRelay, ...]:
    relays = []
    for url in filter(None, (u.strip() for u in raw.split(","))):
        try:
            relays.append(parse_smtp_url(url))
        except ConfigError as exc:
            raise ConfigError(
                "OPTOUT_SMTP_FALLBACK_URLS: " + exc.message.removeprefix("SMTP_URL ")
            ) from None
    return tuple(relays)


def _helo_from(base_url: str) -> str | None:
    # EHLO wants a domain name; an address would need [brackets], so fall back instead.
    host = urlsplit(base_url).hostname or ""
    return host if re.search(r"[a-z]", host) and ":" not in host else None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")
    return value


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def _duration(name: str, raw: str) -> float:
    """Seconds from "90", "30s", "30m", "2h" or "4d"."""
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:])
    try:
        value = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a duration like 30m, 2h or 4d") from None
    if value <= 0:
        raise ConfigError(f"{name}: durations must be positive")
    return value


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
