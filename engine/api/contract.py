"""The OpenAPI contract: every status code a route can answer, with the one error schema,
and real request schemas where routes take free-form JSON.

Applied to the generated document as a whole (:func:`install`), so a route added later gets
its error responses without doing anything. A route names its request schema with
``openapi_extra=request_body(WORKFLOW)`` (or ``EVENT``, ``WORKFLOW_LIST``, ``UPDATE``); the
schemas of the workflow format and of an event come from the pydantic models themselves.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

#: Component names of the request schemas routes can point at.
WORKFLOW, WORKFLOW_LIST, UPDATE, EVENT = "WorkflowDefinition", "WorkflowDefinitionList", "WorkflowUpdate", "Event"


class Problem(BaseModel):
    path: str = Field(description="JSON path of the problem, e.g. actions[1].nextActionId")
    message: str
    severity: Literal["error", "warning"] = "error"


class ErrorDetail(BaseModel):
    code: str = Field(
        description="unauthorized, forbidden, not_found, conflict, too_large, invalid, rate_limited, unavailable, ..."
    )
    message: str
    field: str | None = Field(None, description="the field the error is about")
    problems: list[Problem] | None = Field(None, description="every problem, each with its path (422)")


class ErrorResponse(BaseModel):
    """The one shape of every error the API answers."""

    success: Literal[False]
    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid Content-Length)",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not do this",
    404: "Not found (also another studio's ids)",
    405: "Method not allowed",
    409: "Conflicts with existing data",
    413: "The body is larger than the limit",
    415: "The body is not JSON",
    422: "Invalid input; every problem with its path",
    429: "Too many requests for this key; see Retry-After",
    503: "The database cannot take the request now (a write lock held elsewhere, a full disk, unreachable): "
    "try again after Retry-After seconds",
}
_PUBLIC = {"/api/health", "/api/schema"}


def request_body(component: str, description: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body follows ``component``."""
    body: dict[str, Any] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    codes = [405, 422]
    if path != "/api/schema":  # every other route reads or writes the database
        codes.append(503)
    if path not in _PUBLIC:
        codes += [401, 403, 404, 429]
    if method in ("post", "put", "patch") or "requestBody" in operation:
        codes += [400, 409, 413, 415]
    return sorted(set(codes))


def _component_schemas() -> dict[str, Any]:
    """The workflow format's and the event's JSON Schemas, with their ``$defs`` as components."""
    from engine.workflow.definitions import Event, WorkflowDefinition

    components: dict[str, Any] = {}
    for name, model in ((WORKFLOW, WorkflowDefinition), (EVENT, Event), ("ErrorResponse", ErrorResponse)):
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[name] = schema
    workflow = components[WORKFLOW]
    components[WORKFLOW_LIST] = {
        "oneOf": [
            {"$ref": f"#/components/schemas/{WORKFLOW}"},
            {"type": "array", "items": {"$ref": f"#/components/schemas/{WORKFLOW}"}},
        ]
    }
    properties = {"workflowId": {"type": "string", "minLength": 1, "maxLength": 64}}
    properties.update(copy.deepcopy(workflow["properties"]))
    components[UPDATE] = {
        "type": "object",
        "title": "WorkflowUpdate",
        "required": ["workflowId"],
        "properties": properties,
        "additionalProperties": False,
        "description": "workflowId plus the top-level keys to replace",
    }
    return components


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every error status and the real request schemas."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _component_schemas().items():
        schemas.setdefault(name, schema)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for schema in schemas.values():
        _storable(schema)
    schemas[JSON_VALUE] = _json_value_schema()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _own_request_schema(operation)
            for parameter in operation.get("parameters", []):
                _storable(parameter.get("schema", {}))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _storable(media.get("schema", {}))
            responses = operation.setdefault("responses", {})
            for code in _codes(path, method, operation):
                responses[str(code)] = {"description": _DESCRIPTIONS[code], "content": error}
    return doc


def _own_request_schema(operation: dict[str, Any]) -> None:
    """Where a route names one of our request schemas, that schema alone describes the body."""
    media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = media.get("schema", {})
    if str(schema.get("$ref", "")).rsplit("/", 1)[-1] in (WORKFLOW, WORKFLOW_LIST, UPDATE, EVENT, JSON_VALUE):
        examples = schema.get("examples")
        media["schema"] = {"$ref": schema["$ref"]}
        if examples and "example" not in media:
            media["example"] = examples[0]


#: Text without the NUL character (which no backend stores); JSON Schema's own words for it.
NO_NUL = "^[^\\u0000]*$"
JSON_VALUE = "JsonValue"
_SHAPE_KEYS = {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items", "not"}


def _json_value_schema() -> dict[str, Any]:
    """Any JSON value the API stores: finite numbers, text without NUL, arrays and objects of them."""
    ref = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
    return {
        "description": "any JSON value: finite numbers, text without NUL, nested at most 32 levels",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": ref},
            {"type": "object", "additionalProperties": ref, "propertyNames": {"pattern": NO_NUL}},
        ],
    }


def _storable(schema: Any) -> None:
    """Say in the schema what the API refuses at the edge: NUL in any text, and free-form
    values (``additionalProperties: true``, an untyped schema) are :data:`JSON_VALUE`."""
    if isinstance(schema, list):
        for item in schema:
            _storable(item)
        return
    if not isinstance(schema, dict):
        return
    types = schema.get("type")
    if (
        (types == "string" or (isinstance(types, list) and "string" in types))
        and "pattern" not in schema
        and "enum" not in schema
        and "const" not in schema
    ):
        schema["pattern"] = NO_NUL
    if (
        schema.get("type") == "object"
        and schema.get("additionalProperties") in (True, {})
        and "properties" not in schema
    ):
        schema["additionalProperties"] = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
        # a model that ignores unknown keys still gets them through the edge checks (JSON_VALUE)
        schema["additionalProperties"] = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
    if (
        schema.get("type") == "object"
        and "propertyNames" not in schema
        and schema.get("additionalProperties") is not False
    ):
        schema["propertyNames"] = {"pattern": NO_NUL}
    for key, value in list(schema.items()):
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict) and not _SHAPE_KEYS & set(sub):
                    value[name] = {**sub, "$ref": f"#/components/schemas/{JSON_VALUE}"}
                else:
                    _storable(sub)
        elif key in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf", "prefixItems"):
            _storable(value)


def install(app: FastAPI) -> None:
    """Serve :func:`document` as the app's ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
