"""Counting prompt tokens with tiktoken, offline.

tiktoken downloads its encoding files on first use; we never let it. An encoding is loaded
only from a file already on disk, looked up (by tiktoken's cache naming: the SHA-1 of the
download URL) in, in order:

1. ``TIKTOKEN_CACHE_DIR`` as the user set it (or ``DATA_GYM_CACHE_DIR``, or tiktoken's
   default cache under the temp directory);
2. the copies bundled in litellm's wheel (``litellm/litellm_core_utils/tokenizers``), found
   without importing litellm.

The file's SHA-256 is checked first. When no encoding can be loaded, counts fall back to a
conservative estimate, ``ceil(characters / 3)`` per text (real English runs about four
characters per token), and a warning is logged once. Counting never touches the network and
never raises.

Models other than OpenAI's are counted with ``cl100k_base``: an approximation, close enough
to keep a prompt inside a window that the trimming leaves room in.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .messages import Message
from .models.base import ToolDefinition

__all__ = ["TokenCounter", "encoding_name", "estimate_tokens", "token_counter"]

logger = logging.getLogger("agentflow.agents")

_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4")

# Read at import: importing litellm later overwrites TIKTOKEN_CACHE_DIR with its own folder.
_USER_CACHE_DIR = os.environ.get("TIKTOKEN_CACHE_DIR")

# Texts longer than this (characters) are counted in a worker thread: encoding a few MB
# takes seconds, and the event loop is shared by every run of the worker.
THREAD_THRESHOLD = 100_000

# Per message: role and separators (OpenAI's published accounting); per reply: its priming.
_PER_MESSAGE = 3
_PER_REPLY = 3

_lock = threading.Lock()
_loaded: dict[str, Any] = {}
_warned = False


def encoding_name(model: str) -> str:
    name = model.rsplit("/", 1)[-1]
    return "o200k_base" if name.startswith(_O200K_PREFIXES) else "cl100k_base"


def estimate_tokens(text: str) -> int:
    """The fallback: a deliberately high estimate of ``text``'s tokens."""
    return math.ceil(len(text) / 3)


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    if _USER_CACHE_DIR is not None:
        if _USER_CACHE_DIR:  # "" disables tiktoken's cache: nothing to look in
            dirs.append(Path(_USER_CACHE_DIR))
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        dirs.append(Path(os.environ["DATA_GYM_CACHE_DIR"]))
    else:
        dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.append(Path(location) / "litellm_core_utils" / "tokenizers")
    return dirs


def _find_file(name: str) -> Path | None:
    key = hashlib.sha1(_URL.format(name).encode()).hexdigest()
    for folder in _candidate_dirs():
        path = folder / key
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == _SHA256[name]:
            return path
    return None


@contextlib.contextmanager
def _cache_dir(folder: Path) -> Iterator[None]:
    # tiktoken reads its cache folder from the environment at load time.
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def load_encoding(name: str) -> Any | None:
    """The tiktoken encoding ``name`` from a local file, or ``None`` (blocking: run in a
    thread)."""
    global _warned
    with _lock:
        if name in _loaded:
            return _loaded[name]
        encoding = None
        path = _find_file(name) if name in _SHA256 else None
        if path is not None:
            try:
                import tiktoken

                with _cache_dir(path.parent):
                    encoding = tiktoken.get_encoding(name)
            except (ImportError, OSError, ValueError) as exc:
                logger.debug("cannot load tiktoken encoding %s: %s", name, exc)
        if encoding is None and not _warned:
            _warned = True
            logger.warning(
                "no local tiktoken encoding file for %s (set TIKTOKEN_CACHE_DIR to a folder "
                "holding it, or install litellm, which bundles them); counting tokens as "
                "characters / 3 instead",
                name,
            )
        _loaded[name] = encoding
        return encoding


@dataclass(frozen=True, slots=True)
class TokenCounter:
    """Counts a request's prompt tokens with one encoding (or the estimate without one)."""

    encoding: Any | None

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def text(self, text: str) -> int:
        if not text:
            return 0
        if self.encoding is None:
            return estimate_tokens(text)
        return len(self.encoding.encode(text, disallowed_special=()))

    def message(self, message: Message) -> int:
        n = _PER_MESSAGE + self.text(message.role)
        if message.role == "assistant":
            n += self.text(message.content or "")
            for call in message.tool_calls:
                n += _PER_MESSAGE + self.text(call.name) + self.text(call.arguments)
        elif message.role == "tool":
            n += self.text(message.content) + self.text(message.name)
        else:
            n += self.text(message.content)
        return n

    async def amessage(self, message: Message) -> int:
        """:meth:`message`, in a worker thread when the message is long (see
        ``THREAD_THRESHOLD``), so that a huge tool result does not block the event loop."""
        if self.encoding is not None and _chars(message) > THREAD_THRESHOLD:
            return await anyio.to_thread.run_sync(self.message, message)
        return self.message(message)

    def tools(self, tools: Sequence[ToolDefinition]) -> int:
        if not tools:
            return 0
        return self.text(
            json.dumps([[t.name, t.description, t.parameters] for t in tools], sort_keys=True)
        )

    def overhead(self, tools: Sequence[ToolDefinition]) -> int:
        """What a request costs besides its messages: the tool schemas and reply priming."""
        return self.tools(tools) + _PER_REPLY

    def prompt(self, messages: Sequence[Message], tools: Sequence[ToolDefinition] = ()) -> int:
        return sum(self.message(m) for m in messages) + self.overhead(tools)


def _chars(message: Message) -> int:
    if message.role == "assistant":
        return len(message.content or "") + sum(
            len(c.name) + len(c.arguments) for c in message.tool_calls
        )
    return len(message.content)


async def token_counter(model: str) -> TokenCounter:
    """A counter for ``model``'s encoding, loading it in a worker thread on first use."""
    name = encoding_name(model)
    if name in _loaded:
        return TokenCounter(_loaded[name])
    return TokenCounter(await anyio.to_thread.run_sync(load_encoding, name))
