"""Identifiers from outside, checked in one place (``shared/identifiers.py``)."""

from __future__ import annotations

import pytest

from shared.identifiers import identifier, row_id


@pytest.mark.parametrize("value", ["0", "7", "42", "9" * 18, "000123"])
def test_row_ids_are_ascii_digits(value: str) -> None:
    assert row_id(value) == int(value)


@pytest.mark.parametrize(
    "value",
    # "²" passes str.isdigit() and then fails int(): the old 500. Other scripts' digits, which
    # int() takes, are not ids either.
    ["²", "1²", "\u0663", "\uff11", "9" * 19, "", "-1", "+1", " 1", "1\n", "1.0", "0x1",
     "1_000", None, 7],
)  # fmt: skip
def test_anything_else_is_no_row_id(value: object) -> None:
    assert row_id(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12:8865aa05b4b79b64a91a86042e43af5ea8ae79eb", None), ("x", None), ("a" * 255, None),
     (42, "42"), ("~!#", None)],
)  # fmt: skip
def test_identifiers_are_printable_ascii(value: object, expected: str | None) -> None:
    assert identifier(value) == (expected if expected is not None else value)


@pytest.mark.parametrize(
    "value",
    ["", "\x00", "a\x00b", "a\x07", "\x1b[31m", "tab\there", "new\nline", "sp ace", " x", "é",
     "\ud800", "💥", "a" * 256, True, None, 1.5, ["x"], {"x": 1}],
)  # fmt: skip
def test_control_characters_and_non_ascii_are_refused(value: object) -> None:
    assert identifier(value) is None


def test_the_length_bound_is_the_callers() -> None:
    assert identifier("abcd", max_length=4) == "abcd"
    assert identifier("abcde", max_length=4) is None
