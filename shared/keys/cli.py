"""``attune keys``: list, rotate and rewrap the tool keys from an operator's shell.

Output never contains key material: ``list`` prints kids, states and times only. State changes
go through ``KeyStore`` (advisory lock, outbox events), so running these next to live jwks
replicas is safe; the replicas pick the change up from the key events or within a minute.
"""

from __future__ import annotations

import sys
from datetime import datetime

from shared.db import create_pool
from shared.keys.store import KeyInfo, KeyStore, list_keys
from shared.settings import Settings


def _time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def format_keys(keys: list[KeyInfo]) -> str:
    """A plain-text table: kid, state, created (= published), activated, retired, removed."""
    header = ("KID", "STATE", "CREATED", "ACTIVATED", "RETIRED", "REMOVED")
    rows = [
        (
            k.kid,
            k.state,
            _time(k.created_at),
            _time(k.activated_at),
            _time(k.retired_at),
            _time(k.removed_at),
        )
        for k in keys
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


async def run_keys_command(command: str, settings: Settings, *, now: bool = False) -> int:
    """Run ``attune keys <command>``; ``KeyConfigError`` (a ``SettingsError``) propagates."""
    pool = await create_pool(settings, application_name="keys-cli")
    try:
        if command == "list":
            async with pool.acquire() as conn:
                print(format_keys(await list_keys(conn)))
            return 0
        store = KeyStore(pool, settings, source="attune-cli")
        if command == "rotate":
            result = await store.rotate(activate_now=now)
            key = result.next_key
            if result.activated:
                print(f"key {key.kid} is current now", flush=True)
                print(
                    "attune: warning: platforms holding a cached JWKS cannot verify tokens "
                    f"signed with {key.kid} until they refetch it (up to "
                    f"{settings.key_publish_ahead_s} s)",
                    file=sys.stderr,
                )
            else:
                verb = "published" if result.created else "already pending:"
                due = key.created_at + store.timings.activate_after
                print(f"next key {verb} {key.kid}; it becomes current at {_time(due)}")
            return 0
        if command == "rewrap":
            rewrap = await store.rewrap()
            print(
                f"rewrapped {rewrap.rewrapped} key(s) with KEK {rewrap.kek_id!r}; "
                f"{rewrap.unchanged} already used it"
            )
            return 0
        raise ValueError(f"unknown keys command {command!r}")
    finally:
        await pool.close()
