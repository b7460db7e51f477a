"""The agent's final answer: plain text, or JSON validated against ``output_type``."""

from __future__ import annotations

import json
import re
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from ..workflows import validation_errors
from .models.base import OutputSchema

__all__ = ["InvalidOutput", "OutputSpec"]

T = TypeVar("T")

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class InvalidOutput(ValueError):
    """The answer did not validate; the message says why, for the model."""


class OutputSpec(Generic[T]):
    """Validates final answers against ``output_type`` (``str`` takes any text)."""

    def __init__(self, output_type: type[T] | Any) -> None:
        self.output_type = output_type
        self.is_text = output_type is str
        self._adapter: TypeAdapter[T] = TypeAdapter(output_type)
        self.schema: OutputSchema | None = None
        if not self.is_text:
            schema = self._adapter.json_schema()
            name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
            self.schema = OutputSchema(name=name, schema=schema)

    def instructions(self) -> str:
        if self.schema is None:
            return ""
        return (
            "Give your final answer as a single JSON object, and nothing else, matching this "
            f"JSON schema:\n{json.dumps(self.schema.schema, separators=(',', ':'))}"
        )

    def validate(self, text: str | None) -> T:
        """The answer as ``output_type``.

        Raises:
            InvalidOutput: empty, not JSON, or not matching the schema.
        """
        if self.is_text:
            if not text:
                raise InvalidOutput("the answer was empty; reply with your final answer")
            return text  # type: ignore[return-value]
        if not text or not text.strip():
            raise InvalidOutput("the answer was empty; reply with the JSON object")
        fenced = _FENCE.match(text)
        body = fenced.group(1) if fenced else text.strip()
        try:
            return self._adapter.validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{e['field'] or '(answer)'}: {e['message']}" for e in validation_errors(exc)
            )
            raise InvalidOutput(
                f"your answer did not match the required schema: {problems}. Reply again with "
                "only a corrected JSON object."
            ) from None
