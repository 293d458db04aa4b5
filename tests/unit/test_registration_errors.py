"""Every registration and admin refusal is written for the person reading it: plain text (shown
in HTML pages and JSON alike, so no Markdown) and never "contact your LMS administrator" (the
reader is the LMS administrator, or whoever runs Attune)."""

from __future__ import annotations

import inspect

from services.registration import errors
from shared.errors import AttuneError


def every_error() -> list[AttuneError]:
    found = []
    for name, fn in inspect.getmembers(errors, inspect.isfunction):
        if fn.__module__ != errors.__name__ or name == "err":
            continue
        args = ["a detail"] * len(inspect.signature(fn).parameters)
        found.append(fn(*args))
    return found


def test_every_refusal_speaks_plainly_to_the_admin() -> None:
    found = every_error()
    assert len(found) >= 20
    for exc in found:
        for text in (exc.message, exc.hint or ""):
            assert "`" not in text and "**" not in text, (exc.code, text)
            assert "LMS administrator" not in text, (exc.code, text)
