"""The OpenAPI 3.1 document: it validates, it lists exactly the routes the server has, and a
bounded schemathesis run of every operation (valid and invalid inputs) finds no 5xx."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from aiohttp import web
from openapi_spec_validator import validate
from schemathesis import GenerationMode

from tests.support.api_world import bearer, build_world
from unsubscribe_web.app import create_app

EXAMPLES = 8  # per operation and mode: ~600 requests in all, well under a minute
DEADLINE_S = 50  # a bound on a slow machine; the run normally ends well before


def api_routes(app: web.Application) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            for route in resource._app.router.routes():
                canonical = route.resource.canonical if route.resource else ""
                if canonical.startswith("/api/"):
                    found.add((route.method, canonical))
    return found


async def test_document_validates_and_lists_every_route(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == api_routes(client.app)
    assert len(documented) >= 20
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(
                path.split("{")[i].split("}")[0] for i in range(1, path.count("{") + 1)
            ), (
                method,
                path,
            )


async def test_schemathesis_finds_no_server_error(aiohttp_client, settings, conn, tmp_path):
    world = await build_world(conn, settings, tmp_path)
    client = await aiohttp_client(create_app(settings))
    document = await (await client.get("/api/v1/openapi.json")).json()
    base_url = str(client.make_url("")).rstrip("/")
    schema = schemathesis.openapi.from_dict(document)
    headers = bearer(world.admin)
    failures: list[str] = []
    started = time.monotonic()

    def run() -> int:
        calls = 0
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]
            pinned = {"tenant": "alpha"} if "{tenant}" in operation.path else None
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)

                @hypothesis.settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(hypothesis.HealthCheck),
                    phases=[hypothesis.Phase.generate],
                )
                @hypothesis.given(case=strategy)
                def probe(case: Any) -> None:
                    nonlocal calls
                    if time.monotonic() - started > DEADLINE_S:
                        return
                    calls += 1
                    response = case.call(base_url=base_url, headers=headers, timeout=30)
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path} {case.query} "
                            f"-> {response.status_code} {response.text[:200]}"
                        )

                try:
                    probe()
                except hypothesis.errors.Unsatisfiable:
                    # No invalid input exists for an operation without inputs.
                    assert mode is GenerationMode.NEGATIVE, operation.label
        return calls

    calls = await asyncio.to_thread(run)
    assert failures == []
    assert calls >= 200
