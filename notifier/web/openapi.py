"""The OpenAPI 3.1 document, generated from the endpoint declarations and msgspec types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from notifier.web.errors import ErrorBody
from notifier.web.routing import Endpoint

REF = "#/components/schemas/{name}"
DESCRIPTIONS = {
    400: "Malformed body (not JSON)",
    401: "Missing, invalid or expired credentials",
    403: "Credentials that do not allow this",
    404: "Not found",
    409: "Conflicts with what is stored",
    413: "Body too large",
    415: "Body not sent as application/json",
    422: "Invalid field (named in error.field)",
    429: "Rate limited (see Retry-After)",
}


def _types(endpoints: Sequence[Endpoint]) -> list[Any]:
    found: list[Any] = [ErrorBody]
    for e in endpoints:
        found += [t for t in (e.body, e.query) if t is not None]
        found += _alternatives(e.response)
    return list(dict.fromkeys(found))


def _alternatives(response: Any) -> list[Any]:
    """A response type, or a tuple of alternatives (msgspec needs untagged unions split)."""
    if response is None:
        return []
    return list(response) if isinstance(response, tuple) else [response]


def build_openapi(endpoints: Sequence[Endpoint], version: str) -> dict[str, Any]:
    """The whole document; every endpoint becomes one operation."""
    types = _types(endpoints)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": e.handler.__name__,
            "summary": e.summary,
            "tags": list(e.tags),
            "parameters": _parameters(e, components),
            "responses": _responses(e, by_type),
        }
        if e.auth == "api_key":
            operation["security"] = [{"apiKey": []}]
        elif e.auth == "user":
            operation["security"] = [{"userToken": []}]
        else:
            operation["security"] = []
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[e.body]}},
            }
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifier",
            "version": version,
            "description": "Activity feeds and realtime notifications. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A server API key (NOTIFIER_API_KEYS), for app backends.",
                },
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user token issued by POST /v1/tokens, for browsers.",
                },
            },
        },
    }


def _parameters(e: Endpoint, components: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in e.path_params
    ]
    if e.query is not None:
        query_schema = components[e.query.__name__]
        required = set(query_schema.get("required", []))
        for name, schema in query_schema["properties"].items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    return params


def _responses(e: Endpoint, by_type: dict[Any, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    alternatives = [by_type[t] for t in _alternatives(e.response)]
    if alternatives:
        schema = alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}
        ok["content"] = {"application/json": {"schema": schema}}
    if e.links:
        ok["links"] = {
            name: {"operationId": link.operation, "parameters": dict(link.parameters),
                   **({"requestBody": link.body} if link.body is not None else {})}
            for name, link in e.links.items()
        }  # fmt: skip
    responses: dict[str, Any] = {str(e.status): ok}
    codes = set(e.errors)
    if e.auth != "none":
        codes |= {401, 403, 429}
    if e.body is not None:
        codes |= {400, 413, 415, 422}
    if e.query is not None or e.path_params:
        codes.add(422)
    error = {"application/json": {"schema": by_type[ErrorBody]}}
    for code in sorted(codes):
        responses[str(code)] = {"description": DESCRIPTIONS[code], "content": error}
    return responses
