"""The one hierarchy of domain errors; the CLI, HTTP and SMTP faces map these to replies.

Each exception's docstring is its default message. ``code`` is a stable machine-readable name
(used in JSON error bodies), ``field`` names the input that was wrong, where there is one.
A message a subscriber can see is marked with ``mailer.i18n.N_`` and keeps its numbers in
``params`` (``%(limit)s``), so the pages can show it translated (unsubscribe_web/errors.py).
"""

from __future__ import annotations

from collections.abc import Mapping


class OptoutError(Exception):
    """Something went wrong."""

    code = "error"
    exit_code = 1

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        self.msgid = message or (type(self).__doc__ or "").strip()
        self.params = dict(params or {})
        self.message = self.msgid % self.params if self.params else self.msgid
        self.field = field
        super().__init__(self.message)


class ServeFailed(OptoutError):
    """A service of `optout serve` failed or did not stop cleanly; the others were stopped."""

    code = "serve_failed"


class ConfigError(OptoutError):
    """The configuration is wrong."""

    code = "config"
    exit_code = 2


class KeyMismatch(ConfigError):
    """The keys of this process differ from the ones recorded in the database."""

    code = "key_mismatch"


class MigrationError(OptoutError):
    """A migration failed; the database was left as it was."""

    code = "migration"


class InvalidInput(OptoutError):
    """The input is not valid."""

    code = "invalid"
    exit_code = 2


class InvalidAddress(InvalidInput):
    """The email address is not valid."""

    code = "invalid_address"


class AgeAttestationRequired(InvalidInput):
    """Signing up requires confirming that you are above the minimum age."""

    code = "age_attestation_required"


class NotFound(OptoutError):
    """Not found."""

    code = "not_found"


class UnknownTenant(NotFound):
    """No such tenant."""

    code = "unknown_tenant"
    exit_code = 2  # a wrong name on the command line is bad usage (docs/commands.md)


class UnknownTopic(NotFound):
    """No such topic."""

    code = "unknown_topic"
    exit_code = 2


class UnknownSubscriber(NotFound):
    """No such subscriber."""

    code = "unknown_subscriber"


class Conflict(OptoutError):
    """That conflicts with the current state."""

    code = "conflict"


class Suppressed(Conflict):
    """The address is suppressed and cannot be subscribed by this action."""

    code = "suppressed"


class DatabaseUnavailable(OptoutError):
    """The database cannot be reached."""

    code = "database_unavailable"
    exit_code = 3  # temporary: the same command may succeed later (docs/commands.md)


class Unauthorized(OptoutError):
    """An API token is required (Authorization: Bearer TOKEN)."""

    code = "unauthorized"


class Forbidden(OptoutError):
    """This token's role may not do that."""

    code = "forbidden"


class TooBusy(OptoutError):
    """Too many requests are being handled right now; try again in a moment."""

    code = "too_busy"
    exit_code = 3


class SignOnRefused(OptoutError):
    """Single sign-on did not succeed. Sign in again, or ask an admin."""

    code = "sign_on_refused"
