"""The OpenAPI document covers every route, and the API survives fuzzing from it."""

from __future__ import annotations

import re

from starlette.routing import Route

from notifier.web.app import create_app
from tests.web.conftest import Api

# Not JSON API: the schema itself, Prometheus text, the unsubscribe page of email digests.
UNDOCUMENTED = {"/openapi.json", "/metrics", "/v1/unsubscribe"}


async def test_every_route_is_in_the_schema(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    app = create_app(api.services)
    routes = [r for r in app.routes if isinstance(r, Route) and r.path not in UNDOCUMENTED]
    assert len(routes) >= 16
    for route in routes:
        for method in route.methods or ():
            if method == "HEAD":
                continue
            assert method.lower() in schema["paths"].get(route.path, {}), (method, route.path)
    # Every {param} of a path is declared as a parameter.
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path))
