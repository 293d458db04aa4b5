"""Identifiers that come from outside, checked in one place for every edge that takes one.

Two shapes, each a pure function that returns the usable value or None (the caller turns None
into its own stable 4xx code):

* ``row_id``: a database row id a client names (a path parameter such as the check-in id, a
  form field, a query parameter, a custom launch parameter): 1 to 18 ASCII digits, so it fits
  a Postgres ``bigint``. Not ``str.isdigit``: that accepts Unicode digits such as ``²`` or
  ``٣``, which ``int`` then refuses (a 500 where a 404 belongs).
* ``identifier``: an identifier another system chose (an LTI deployment id, a client id):
  printable ASCII without spaces (``!`` to ``~``), 1 to 255 characters (LTI 1.3: a deployment
  id "MUST NOT exceed 255 ASCII characters"). NUL, control characters, lone surrogates and
  non-ASCII never reach Postgres, logs or pages through one. An integer (JSON numbers from an
  LMS) stands for its decimal text.
"""

from __future__ import annotations

import re
from typing import Final

ROW_ID_MAX_DIGITS: Final = 18
IDENTIFIER_MAX_LENGTH: Final = 255

_ROW_ID = re.compile(f"[0-9]{{1,{ROW_ID_MAX_DIGITS}}}")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def row_id(value: object) -> int | None:
    """``value`` as a row id (ASCII digits, at most 18), else None."""
    if isinstance(value, str) and _ROW_ID.fullmatch(value):
        return int(value)
    return None


def identifier(value: object, max_length: int = IDENTIFIER_MAX_LENGTH) -> str | None:
    """``value`` as an external identifier (printable ASCII without spaces, 1..``max_length``
    characters; an integer as its decimal text), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and len(value) <= max_length and _PRINTABLE_ASCII.fullmatch(value):
        return value
    return None
