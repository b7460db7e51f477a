"""Models served through the openai SDK: OpenAI itself and any OpenAI-compatible server
(vLLM, Ollama, LM Studio, a gateway), chosen by ``base_url``.

The SDK is imported on first use, in a worker thread, so that importing an application (and
starting a worker) does not pay for it.
"""

from __future__ import annotations

import importlib
import os
import time
import weakref
from typing import TYPE_CHECKING, Any

import anyio

from ..pricing import KNOWN_CONTEXT_WINDOWS, KNOWN_PRICES, ModelPrice, lookup
from ._chat import chat_kwargs, chat_response, parse_completion, read_stream
from .base import Model, ModelRequest, ModelResponse, TextStream
from .errors import ModelAuthError, classify_openai_error

if TYPE_CHECKING:
    import asyncio

    from openai import AsyncOpenAI

__all__ = ["OpenAIModel"]


class OpenAIModel(Model):
    """A chat model behind the openai SDK.

    ``OpenAIModel("gpt-4o-mini")`` uses ``OPENAI_API_KEY``;
    ``OpenAIModel("llama3.1", base_url="http://127.0.0.1:11434/v1")`` talks to a local
    OpenAI-compatible server (no key needed). The SDK's own retries are off: the agent's step
    retry policy retries (and journals) failed calls instead.

    ``structured_output`` sends a JSON-schema ``response_format`` when the agent wants a
    structured answer; turn it off for servers that reject it (the schema is also in the
    instructions).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncOpenAI | None = None,
        context_window: int | None = None,
        price: ModelPrice | None = None,
        structured_output: bool = True,
        timeout: float = 120.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.structured_output = structured_output
        self.context_window = context_window or lookup(KNOWN_CONTEXT_WINDOWS, model, variants=True)
        # A local server's model is not OpenAI's, even when it shares a name.
        self.price = price or (None if base_url else lookup(KNOWN_PRICES, model))
        self._client = client
        # One client per event loop: an httpx pool cannot be shared between loops.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._openai: Any = None
        self._httpx: Any = None

    @property
    def name(self) -> str:
        return self.model

    async def prepare(self) -> None:
        if self._openai is None:
            self._openai = await anyio.to_thread.run_sync(importlib.import_module, "openai")
            self._httpx = importlib.import_module("httpx")  # an openai dependency

    def _get_client(self) -> AsyncOpenAI:
        if self._client is not None:
            return self._client
        import asyncio

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            api_key = self.api_key or os.environ.get("OPENAI_API_KEY")
            if api_key is None and self.base_url is None:
                raise ModelAuthError(
                    "no API key: set OPENAI_API_KEY or pass api_key= (or base_url= for a "
                    "local OpenAI-compatible server)",
                    model=self.model,
                )
            client = self._openai.AsyncOpenAI(
                api_key=api_key or "not-needed",
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout,
                # Our own httpx client: the SDK's default one, when garbage-collected,
                # schedules its close on whatever loop is running then, which may not be
                # the loop its connections belong to.
                http_client=self._httpx.AsyncClient(timeout=self.timeout, follow_redirects=True),
            )
            self._clients[loop] = client
        return client

    async def request(
        self, request: ModelRequest, stream: TextStream | None = None
    ) -> ModelResponse:
        await self.prepare()
        kwargs = chat_kwargs(request, structured_output=self.structured_output)
        started = time.monotonic()
        try:
            client = self._get_client()
            if stream is None:
                completion = parse_completion(
                    await client.chat.completions.create(model=self.model, **kwargs)
                )
            else:
                chunks = await client.chat.completions.create(
                    model=self.model,
                    stream=True,
                    stream_options={"include_usage": True},
                    **kwargs,
                )
                async with chunks:  # closes the response if publishing fails midway
                    completion = await read_stream(chunks, stream)
        except (self._openai.OpenAIError, self._httpx.TransportError) as exc:
            # httpx errors: raised while reading a stream, which the SDK does not wrap.
            error = classify_openai_error(self._openai, exc, self.model)
            if error is None:
                raise
            raise error from exc
        return chat_response(self, completion, started)
