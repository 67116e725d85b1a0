"""The OpenAPI 3.1 document of the admin API, built from the same endpoint table as the router."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailer import events
from unsubscribe_web.api.spec import Endpoint

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}

ERRORS = {
    "400": "The input is not valid: the field is named in the error",
    "401": "The token is missing, not valid, expired or revoked",
    "403": "The token's role lacks this right inside its own tenant",
    "404": "No such object, or it belongs to another tenant (the answer is the same)",
    "409": "It conflicts with the current state",
}


def _strip(schema: Any) -> Any:
    """The schema without our own x- keywords (kept out of the document's schemas)."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if not k.startswith("x-")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def _operation(prefix: str, endpoint: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name in endpoint.path_params:
        spec = next((p for p in endpoint.params if p.name == name), None)
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _strip(spec.schema if spec else {"type": "string"}),
            }
        )
    for param in endpoint.params:
        if param.location == "query":
            item: dict[str, Any] = {
                "name": param.name,
                "in": "query",
                "required": param.required,
                "schema": _strip(param.schema),
            }
            if param.description:
                item["description"] = param.description
            params.append(item)
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "tags": [endpoint.path.strip("/").split("/")[0] or "api"],
        "parameters": params,
        "responses": {
            str(endpoint.status): {
                "description": "Success",
                "content": {"application/json": {"schema": _strip(endpoint.response)}},
            }
        },
    }
    if endpoint.right is not None:
        operation["description"] = f"Needs the right `{endpoint.right}`."
    if endpoint.public:
        operation["security"] = []
    else:
        for status, text in ERRORS.items():
            operation["responses"][status] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _strip(endpoint.body)}},
        }
    elif endpoint.csv_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    return operation


def document(prefix: str, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = _operation(
            prefix, endpoint
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Optout admin API",
            "version": "1",
            "description": (
                "Tenants, topics, subscribers, consent history, suppressions, imports and the "
                "audit log, for admin, marketing, compliance and client tokens. Objects of "
                "another tenant answer 404 exactly like objects that do not exist."
            ),
        },
        "paths": paths,
        # What Optout POSTs to a tenant's event endpoints (issue 22; docs/webhooks.md).
        "webhooks": {
            name: {
                "post": {
                    "summary": f"{name} (version {events.EVENT_TYPES[name]})",
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                        }
                    },
                    "responses": {"2XX": {"description": "received; any other answer is retried"}},
                }
            }
            for name in events.EVENT_TYPES
        },
        "components": {
            "schemas": {
                "Error": ERROR_SCHEMA,
                "Event": events.ENVELOPE_SCHEMA,
                **{
                    name: {
                        "allOf": [
                            {"$ref": "#/components/schemas/Event"},
                            {"properties": {"type": {"const": name}, "data": data}},
                        ]
                    }
                    for name, data in events.DATA_SCHEMAS.items()
                },
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
