"""The admin API's route specification: each endpoint's method, path, right, parameters and
bodies as JSON Schema. One table drives the router, the input checks and the OpenAPI document,
so the three cannot drift apart.

The checks cover the JSON Schema subset the table uses (type, enum, bounds, pattern, required,
additionalProperties false) and refuse control characters in every string, so nothing a client
sends reaches Postgres in a shape it would reject with a server error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailer.errors import InvalidInput

MAX_ID = 2**63 - 1
SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"


def string(
    max_length: int = 200,
    *,
    min_length: int | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] | None = None,
    multiline: bool = False,
    nullable: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    if enum is not None:
        schema["enum"] = list(enum)
    else:
        schema["maxLength"] = max_length
    if min_length is not None:
        schema["minLength"] = min_length
    if pattern is not None:
        schema["pattern"] = pattern
    if multiline:
        schema["x-multiline"] = True
    if description:
        schema["description"] = description
    return schema


def integer(minimum: int = 1, maximum: int = MAX_ID, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


BOOLEAN: dict[str, Any] = {"type": "boolean"}
SLUG = string(63, pattern=SLUG_PATTERN)
ID = integer()
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def obj(properties: Mapping[str, dict[str, Any]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    location: str = "query"  # or "path"
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: the handler gets the checked query as a dict and the checked body."""

    method: str
    path: str  # below /api/v1, with {name} path parameters
    name: str  # the route name and the OpenAPI operationId
    summary: str
    handler: Callable[..., Awaitable[Any]]
    right: str | None  # None: any valid token
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON Schema of a JSON body
    csv_body: bool = False  # a text/csv body, streamed
    status: int = 200
    response: dict[str, Any] = field(default_factory=lambda: dict(ANY_OBJECT))
    # Writes are audited by the API layer in the same transaction; these do it themselves
    # (imports commit in batches, so cannot sit inside one transaction).
    own_transaction: bool = False
    audit_read: bool = False  # a read of personal data worth a line in the audit log
    domain_audit: bool = False  # the mailer function writes its own audit line
    public: bool = False  # no token needed (the OpenAPI document)
    max_body: int | None = None  # a JSON body larger than the app's 64 KiB (tenant templates)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


def _fail(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(message, field=field_name)


def check(value: Any, schema: Mapping[str, Any], name: str) -> Any:
    """``value`` if it matches ``schema`` (the subset above); InvalidInput naming the field."""
    types = schema.get("type")
    allowed = [types] if isinstance(types, str) else list(types or [])
    if value is None:
        if "null" in allowed:
            return None
        raise _fail(name, f"{name} must not be null.")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(name, f"{name} must be one of {', '.join(map(str, schema['enum']))}.")
    if "string" in allowed and isinstance(value, str):
        return _check_string(value, schema, name)
    if "integer" in allowed and isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", -MAX_ID) or value > schema.get("maximum", MAX_ID):
            raise _fail(
                name,
                f"{name} must be from {schema.get('minimum')} to {schema.get('maximum')}.",
            )
        return value
    if "boolean" in allowed and isinstance(value, bool):
        return value
    if "array" in allowed and isinstance(value, list):
        if len(value) > schema.get("maxItems", 1000):
            raise _fail(name, f"{name} has too many items.")
        return [check(item, schema.get("items", {}), name) for item in value]
    if "object" in allowed and isinstance(value, dict):
        return _check_object(value, schema, name)
    raise _fail(name, f"{name} must be of type {' or '.join(allowed)}.")


def _check_string(value: str, schema: Mapping[str, Any], name: str) -> str:
    multiline = schema.get("x-multiline", False)
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") and not (multiline and char in "\r\n\t"):
            raise _fail(name, f"{name} contains a control character.")
    if len(value) > schema.get("maxLength", 10_000):
        raise _fail(name, f"{name} is longer than {schema.get('maxLength', 10_000)} characters.")
    if len(value) < schema.get("minLength", 0):
        raise _fail(name, f"{name} is too short.")
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        raise _fail(name, f"{name} has the wrong form.")
    return value


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] | None = schema.get("properties")
    if properties is None:
        return value
    unknown = sorted(set(value) - set(properties))
    if unknown:
        raise _fail(unknown[0], f"Unknown field {unknown[0]!r}.")
    for required in schema.get("required", ()):
        if required not in value:
            raise _fail(required, f"{required} is required.")
    return {key: check(item, properties[key], key) for key, item in value.items()}


_INTEGER = re.compile(r"-?[0-9]{1,20}", re.ASCII)


def check_query(params: tuple[Param, ...], query: Mapping[str, str]) -> dict[str, Any]:
    """The query string, converted by each parameter's schema; unknown names are refused."""
    known = {p.name: p for p in params if p.location == "query"}
    out: dict[str, Any] = {}
    for key in query:
        if key not in known:
            raise _fail(key, f"Unknown query parameter {key!r}.")
        if len(query.getall(key)) > 1:  # type: ignore[attr-defined]
            raise _fail(key, f"{key} is given more than once.")
    for name, param in known.items():
        raw = query.get(name)
        if raw is None:
            if param.required:
                raise _fail(name, f"{name} is required.")
            continue
        types = param.schema.get("type")
        value: Any = raw
        if types == "integer":
            if not _INTEGER.fullmatch(raw):
                raise _fail(name, f"{name} must be a whole number.")
            value = int(raw)
        elif types == "boolean":
            if raw not in ("true", "false"):
                raise _fail(name, f"{name} must be true or false.")
            value = raw == "true"
        out[name] = check(value, param.schema, name)
    return out


def path_id(raw: str) -> int | None:
    """A path id, or None when it cannot name any row (then the answer is a plain 404)."""
    if not _INTEGER.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None
