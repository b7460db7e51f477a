"""JSON encoding of payloads, step results and records; type adapters are built once."""

from __future__ import annotations

import hashlib
import inspect
import json
import traceback
from functools import lru_cache
from typing import Any

import pydantic_core
from pydantic import TypeAdapter

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def dumps(value: Any) -> str:
    """Serialise any JSON-able value (pydantic models, dataclasses, datetimes included)."""
    return pydantic_core.to_json(value, fallback=_fallback).decode()


def _fallback(value: Any) -> Any:
    raise TypeError(
        f"cannot store a value of type {type(value).__name__} in the journal; "
        "return JSON-able data (dict, list, str, numbers, pydantic models, dataclasses)"
    )


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@lru_cache(maxsize=1024)
def adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def restore(text: str | None, tp: Any) -> Any:
    """Turn stored JSON back into ``tp`` (a pydantic model round-trips to its class)."""
    if tp is inspect.Parameter.empty or tp is Any or tp is None:
        return loads(text)
    return adapter(tp).validate_json(text if text is not None else "null")


def digest(value: Any) -> str:
    """A stable digest of JSON-able data (keys sorted), used to bind approvals to their data."""
    canonical = json.dumps(json.loads(dumps(value)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
