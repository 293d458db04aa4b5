"""Text Postgres can store: JSON allows NUL (``\\u0000``) and unpaired surrogates
(``\\ud800``), Postgres ``text`` and ``jsonb`` accept neither, and a lone surrogate cannot
even be encoded as UTF-8 for a response. Outside input is checked with these before it is kept.
"""

from __future__ import annotations

from typing import Any


def storable_text(value: str) -> bool:
    """True unless ``value`` holds a NUL or an unpaired surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable_json(value: Any) -> bool:
    """``storable_text`` for every string (keys included) in a parsed JSON document.

    Iterative, so a document nested as deep as the JSON parser allows cannot exhaust the stack.
    """
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if not storable_text(item):
                return False
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return True
