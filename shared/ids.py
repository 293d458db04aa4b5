"""Identifiers for rows written on hot paths.

``uuid7`` (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made one after
another sort one after another, so a primary key or unique index on them grows at its right
edge instead of touching a random page per insert (which, in a table of millions of launch
records, means cache misses and a full-page image in the WAL after every checkpoint). Python
3.11 has no ``uuid.uuid7``; this is the layout of the RFC's method 1 without the counter.
"""

from __future__ import annotations

import os
import time
import uuid

_RAND_B = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits, 74 used
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version
        | ((rand >> 62) & 0xFFF) << 64  # rand_a
        | 0b10 << 62  # variant
        | (rand & _RAND_B)  # rand_b
    )
    return uuid.UUID(int=value)
