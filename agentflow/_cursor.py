"""Opaque page cursors: the (created_at, id) key of the last run of a page."""

from __future__ import annotations

import base64
import binascii
import json

from .errors import InvalidCursorError

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(created_at: float, run_id: str) -> str:
    raw = json.dumps([created_at, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises: InvalidCursorError when ``cursor`` is not one this library produced."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = json.loads(raw)
        if isinstance(created_at, bool) or not isinstance(created_at, int | float):
            raise ValueError
        if not isinstance(run_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise InvalidCursorError() from None
    return float(created_at), run_id
