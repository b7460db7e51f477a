"""Models: the interface, the openai SDK and litellm backends, and offline test models.

Importing this package imports neither openai nor litellm; each backend imports its SDK on
its first request.
"""

from .base import (
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    OutputSchema,
    TextStream,
    ToolDefinition,
)
from .errors import (
    ModelAuthError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelError,
    ModelQuotaExceededError,
    ModelRateLimitError,
    ModelServerError,
    ModelTimeoutError,
)
from .litellm import LiteLLMModel
from .offline import FunctionModel, Reply, ScriptedModel, ScriptExhaustedError, tool_call
from .openai import OpenAIModel

__all__ = [
    "FunctionModel",
    "LiteLLMModel",
    "Model",
    "ModelAuthError",
    "ModelBadRequestError",
    "ModelConnectionError",
    "ModelError",
    "ModelQuotaExceededError",
    "ModelRateLimitError",
    "ModelRequest",
    "ModelResponse",
    "ModelServerError",
    "ModelSettings",
    "ModelTimeoutError",
    "OpenAIModel",
    "OutputSchema",
    "Reply",
    "ScriptExhaustedError",
    "ScriptedModel",
    "TextStream",
    "ToolDefinition",
    "tool_call",
]
