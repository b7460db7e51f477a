"""Models served through litellm: any provider litellm supports, chosen by its model string
(``anthropic/claude-3-5-haiku-latest``, ``gemini/gemini-2.0-flash``, ``openai/...`` with an
``api_base``...).

litellm is imported on first use, in a worker thread (it takes seconds). Before importing
it we set ``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless the environment says otherwise, so
that the import reads litellm's bundled price table instead of fetching it over the network.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

import anyio

from ..pricing import ModelPrice
from ._chat import chat_kwargs, chat_response, parse_completion, read_stream
from .base import Model, ModelRequest, ModelResponse, TextStream
from .errors import classify_openai_error

__all__ = ["LiteLLMModel"]


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return importlib.import_module("litellm")


class LiteLLMModel(Model):
    """A chat model called through ``litellm.acompletion``.

    The context window and price come from litellm's model table when it knows the model,
    unless given here. litellm's retries are off: the agent's step retry policy retries (and
    journals) failed calls. Extra keyword arguments are passed to every ``acompletion`` call.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        context_window: int | None = None,
        price: ModelPrice | None = None,
        structured_output: bool = True,
        timeout: float = 120.0,
        **extra: Any,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.structured_output = structured_output
        self.extra = extra
        self.context_window = context_window
        self.price = price
        self._litellm: Any = None

    @property
    def name(self) -> str:
        return self.model

    async def prepare(self) -> None:
        if self._litellm is not None:
            return
        litellm = await anyio.to_thread.run_sync(_import_litellm)
        info = litellm.model_cost.get(self.model) or litellm.model_cost.get(
            self.model.split("/", 1)[-1]
        )
        if info:
            if self.context_window is None:
                window = info.get("max_input_tokens") or info.get("max_tokens")
                self.context_window = int(window) if window else None
            if self.price is None and "input_cost_per_token" in info:
                self.price = ModelPrice(
                    float(info["input_cost_per_token"]) * 1_000_000,
                    float(info.get("output_cost_per_token", 0.0)) * 1_000_000,
                )
        self._litellm = litellm

    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        await self.prepare()
        litellm = self._litellm
        kwargs: dict[str, Any] = {
            **chat_kwargs(request, structured_output=self.structured_output),
            "model": self.model,
            "num_retries": 0,
            "max_retries": 0,
            "timeout": request.settings.get("timeout", self.timeout),
            **self.extra,
        }
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        started = time.monotonic()
        openai = importlib.import_module("openai")  # a litellm dependency, already loaded
        httpx = importlib.import_module("httpx")  # likewise
        try:
            if stream is None:
                completion = parse_completion(await litellm.acompletion(**kwargs))
            else:
                chunks = await litellm.acompletion(
                    stream=True, stream_options={"include_usage": True}, **kwargs
                )
                completion = await read_stream(chunks, stream)
        except (openai.OpenAIError, httpx.TransportError) as exc:  # litellm's derive from openai's
            error = classify_openai_error(openai, exc, self.model)
            if error is None:
                raise
            raise error from exc
        return chat_response(self, completion, started)
