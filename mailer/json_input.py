"""JSON from outside (API bodies, relay webhooks): parsed with a bound on nesting, so a body
of ten thousand nested brackets is a clear 400, never a RecursionError (a 500) here or in any
code that walks the value afterwards."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "loads"]

MAX_DEPTH = 64
"""Deeper than any document we accept (our bodies nest three or four levels)."""


class TooDeep(ValueError):
    """The JSON value is nested too deeply."""


def loads(raw: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, refusing values nested deeper than ``max_depth`` with TooDeep.

    Raises ValueError (json.JSONDecodeError, UnicodeDecodeError, TooDeep) for bad input.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        # The C scanner recurses per level: past the interpreter's limit it gives up.
        raise TooDeep(f"JSON nested more than {max_depth} levels deep") from None
    # Measured without recursion: the value itself may be as deep as the parser allowed.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise TooDeep(f"JSON nested more than {max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value
