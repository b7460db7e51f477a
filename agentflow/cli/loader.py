"""Import the user's application: an ``module:attribute`` string naming an agentflow Engine."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from agentflow.engine import Engine

__all__ = ["load_engine"]


def load_engine(spec: str) -> Engine:
    """Import ``spec`` (``"package.module:engine"``) from the working directory.

    A bare module name (``"myapp"``) means its ``engine`` attribute.

    Raises:
        UsageError: the module cannot be imported, lacks the attribute, or the attribute is
            not an :class:`agentflow.Engine`.
    """
    from agentflow.engine import Engine

    module_name, _, attr = spec.partition(":")
    attr = attr or "engine"
    if not module_name or not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(
            f"invalid application {spec!r}: expected 'module:attribute', e.g. 'myapp:engine'"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {spec!r}: {exc}") from None
    except Exception as exc:  # the module itself failed while importing
        raise UsageError(f"cannot import {spec!r}: {type(exc).__name__}: {exc}") from None
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"cannot import {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, Engine):
        raise UsageError(
            f"{spec!r} is not an agentflow Engine (it is {type(obj).__name__}); point APP at "
            "the Engine instance, e.g. 'myapp:engine'"
        )
    return obj
