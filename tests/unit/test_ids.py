"""uuid7: RFC 9562 layout, the time in the first 48 bits, ordered across milliseconds."""

from __future__ import annotations

import time

import pytest

from shared import ids
from shared.ids import uuid7


def test_layout_and_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert (value.int >> 62) & 0b11 == 0b10  # RFC variant
    assert before <= value.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_later_and_ids_do_not_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_790_000_000_000_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    first = uuid7()
    now[0] += 1_000_000  # one millisecond later
    second = uuid7()
    assert first < second
    assert first.int >> 80 == 1_790_000_000_000 and second.int >> 80 == 1_790_000_000_001
    many = {uuid7() for _ in range(10_000)}
    assert len(many) == 10_000
