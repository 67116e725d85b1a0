"""Translate database errors to domain errors in one place, by constraint name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from mailer.errors import Conflict, InvalidInput, OptoutError

# Constraint name -> (error class, message, field).
CONSTRAINTS: dict[str, tuple[type[OptoutError], str, str | None]] = {
    "tenants_slug_key": (Conflict, "A tenant with that slug exists already.", "slug"),
    "topics_tenant_id_slug_key": (Conflict, "A topic with that slug exists already.", "slug"),
    "tenants_slug_check": (
        InvalidInput,
        "The slug must be 1-63 lowercase letters, digits or dashes.",
        "slug",
    ),
    "topics_slug_check": (
        InvalidInput,
        "The slug must be 1-63 lowercase letters, digits or dashes.",
        "slug",
    ),
    "tenants_minimum_age_check": (
        InvalidInput,
        "The minimum age must be from 13 to 21 (the policy excludes children 13 or under).",
        "minimum_age",
    ),
    "tenants_notice_period_days_check": (
        InvalidInput,
        "The notice period must be from 0 to 365 days.",
        "notice_period_days",
    ),
}


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Re-raise integrity errors the caller can cause as the matching domain error."""
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        name = getattr(exc, "constraint_name", None)
        if name in CONSTRAINTS:
            cls, message, field = CONSTRAINTS[name]
            raise cls(message, field=field) from exc
        raise
