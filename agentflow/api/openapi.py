"""The OpenAPI 3.1 document, built from the declared operations and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .auth import is_public
from .routing import Operation
from .schemas import ErrorBody

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    404: "No such run, workflow or approval.",
    409: "Conflicts with the current state (e.g. the run already ended, approval resolved).",
    401: "Missing, invalid or revoked API key (or webhook signature).",
    403: "The API key is read-only, or the link's signature is invalid or expired.",
    413: "Request body too large.",
    422: "Invalid JSON, body, query or payload; every invalid field is listed.",
}


def openapi_document(
    operations: Iterable[Operation],
    *,
    title: str = "agentflow",
    version: str = "1",
    extra_paths: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document for ``operations`` plus hand-written ``extra_paths`` (e.g. SSE)."""
    ops = list(operations)
    models: set[type[BaseModel]] = {ErrorBody}
    for op in ops:
        models.add(op.response)
        if op.body is not None:
            models.add(op.body)
    keyed = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(m, "validation" if _is_input(m, ops) else "serialization") for m in keyed],
        ref_template=_REF,
    )
    ref_of = {model: schema for (model, _mode), schema in refs.items()}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref_of)
    for path, ops_at in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(ops_at)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }


def _is_input(model: type[BaseModel], ops: list[Operation]) -> bool:
    return any(op.body is model for op in ops)


def _operation(op: Operation, ref_of: dict[Any, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    doc: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": params,
        "responses": {
            str(op.status): {
                "description": "OK",
                "content": {"application/json": {"schema": ref_of[op.response]}},
            },
            **{
                str(status): {
                    "description": _ERROR_TEXT.get(status, "Error."),
                    "content": {"application/json": {"schema": ref_of[ErrorBody]}},
                }
                for status in op.errors
            },
        },
    }
    if is_public(op.path):
        doc["security"] = []  # signed instead (webhooks, approval links)
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": ref_of[op.body]}},
        }
    return doc
