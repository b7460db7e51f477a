"""Bounds the front ends (HTTP API, MCP server) put on what they accept, so that bad input is
refused with a message naming the field instead of failing in the database."""

from __future__ import annotations

__all__ = ["KEY_LENGTH", "MAX_DELAY", "MAX_ID", "MAX_PRIORITY"]

KEY_LENGTH = 200
"""Ids, names, keys and tags are stored in columns of this many characters."""

MAX_ID = 2**62
"""Row ids (log entries, stream chunks) are 64-bit integers in the database."""

MAX_PRIORITY = 1_000_000
"""Priorities are ordinary integers; this keeps them far inside the column's range."""

MAX_DELAY = 100 * 365 * 86400.0
"""The longest a run may be delayed, in seconds: far enough for any plan, inside the range
``datetime`` can represent."""
