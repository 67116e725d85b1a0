"""Where the SQL and the built-in templates are: the package data `mailer.sql` and
`mailer.templates`, found only through importlib.resources, so an installed wheel runs outside a
checkout (in a checkout, pyproject maps them to the top-level sql/ and templates/)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mailer.errors import ConfigError


def package_folder(package: str) -> Path:
    """The folder of a data package. Migrations, aiosql and Jinja's loader read real files, so
    the package must be installed unpacked (pip always does), not imported from a zip."""
    root = files(package)
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(f"{package} is not an unpacked folder; reinstall Optout with pip")
    return root


SQL_DIR = package_folder("mailer.sql")
QUERIES_DIR = SQL_DIR / "queries"
MIGRATIONS_DIR = SQL_DIR / "migrations"
ADMIN_SQL_DIR = SQL_DIR / "admin"
TEMPLATES_DIR = package_folder("mailer.templates")
EMAIL_TEMPLATES_DIR = TEMPLATES_DIR / "email"
WEB_TEMPLATES_DIR = TEMPLATES_DIR / "web"
STATIC_DIR = WEB_TEMPLATES_DIR / "static"


def _locale_folder() -> Path:
    """The gettext catalogs. The wheel ships the top-level locale/ as mailer/locale/ (package
    data of `mailer.locale`). locale/ has no __init__.py on purpose: a package named `locale`
    at the top of a checkout would shadow the standard library's `locale` for anything run
    from there (pytest, Babel), and setuptools' editable finder maps only regular packages
    into `mailer`, so a checkout finds the folder next to the `mailer` package instead."""
    installed = files("mailer") / "locale"
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    checkout = package_folder("mailer").parent / "locale"
    if checkout.is_dir():
        return checkout
    raise ConfigError("the gettext catalogs (mailer/locale) are missing; reinstall Optout")


LOCALE_DIR = _locale_folder()
