"""Replaying events: the way back after the broker lost what it had acknowledged.

The outbox keeps every published row for ``ATTUNE_OUTBOX_RETENTION_HOURS`` after the relay
marked it sent. When a Kafka cluster is lost or rebuilt (or the embedded development broker
is killed), the events it had acknowledged since some moment may be gone before every consumer
applied them. ``replay`` marks the retained rows of the given topics that were handed to the
broker at or after that moment as unsent again; the running relays then publish them as they
publish anything (in their original order, ``acks=all``, marked sent once acknowledged), and
every work consumer skips the events it already applied (``consumed_events``) and applies the
ones it missed. Projections converge to the database's truth because their handlers are
idempotent and never let an older event overwrite a newer state.

``attune events replay --topic T --since TIME`` runs it from an operator's shell; the runbook
is in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.db import create_pool
from shared.events import topics as all_topics
from shared.settings import Settings

_AGO = re.compile(r"(?P<n>[0-9]{1,6})(?P<unit>[smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

_MARK = """
WITH replayed AS (
    UPDATE outbox SET sent_at = NULL
    WHERE topic = any($1::text[]) AND sent_at >= $2 AND ($3::timestamptz IS NULL OR sent_at < $3)
    RETURNING topic
)
SELECT topic, count(*) AS n FROM replayed GROUP BY topic
"""
_OLDEST = "SELECT min(sent_at) FROM outbox WHERE topic = any($1::text[]) AND sent_at IS NOT NULL"


class BadTime(ValueError):
    """A --since/--until value that is neither a moment nor a duration ago."""


def parse_moment(text: str, now: datetime) -> datetime:
    """An ISO 8601 moment with its offset (``2026-11-23T14:05:00Z``) or a duration before
    ``now`` (``90s``, ``30m``, ``6h``, ``2d``)."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        return now - timedelta(**{_UNITS[ago["unit"]]: int(ago["n"])})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(
            f"{text!r} is neither a time with its offset (2026-11-23T14:05:00Z) nor a "
            "duration ago (30m, 6h, 2d)"
        ) from None
    if moment.tzinfo is None:
        raise BadTime(f"{text!r} has no offset; add Z for UTC or +01:00 and the like")
    return moment


@dataclass(frozen=True)
class Replay:
    """What a replay found (``dry_run``) or marked: rows per topic, and the oldest row the
    outbox still holds for these topics (earlier ones were purged and cannot be replayed)."""

    by_topic: dict[str, int]
    oldest_retained: datetime | None

    @property
    def total(self) -> int:
        return sum(self.by_topic.values())


async def replay(
    pool: asyncpg.Pool,
    topics: Sequence[str],
    since: datetime,
    until: datetime | None = None,
    *,
    dry_run: bool = False,
) -> Replay:
    """Mark the retained rows of ``topics`` sent in [``since``, ``until``) as unsent, so the
    relays publish them again; with ``dry_run`` only count them."""
    unknown = set(topics) - set(all_topics.ALL)
    if unknown:
        raise ValueError(f"unknown topics: {', '.join(sorted(unknown))}")
    names = list(topics)
    async with pool.acquire() as conn, conn.transaction():
        oldest = await conn.fetchval(_OLDEST, names)
        if dry_run:
            rows = await conn.fetch(
                "SELECT topic, count(*) AS n FROM outbox WHERE topic = any($1::text[])"
                " AND sent_at >= $2 AND ($3::timestamptz IS NULL OR sent_at < $3) GROUP BY topic",
                names,
                since,
                until,
            )
        else:
            rows = await conn.fetch(_MARK, names, since, until)
    counts = {topic: 0 for topic in names}
    counts.update({r["topic"]: int(r["n"]) for r in rows})
    return Replay(counts, oldest)


async def run_replay_command(args: argparse.Namespace, settings: Settings) -> int:
    """``attune events replay``: print what was marked (stdout) and any caveat (stderr)."""
    now = datetime.now(UTC)
    try:
        since = parse_moment(args.since, now)
        until = parse_moment(args.until, now) if args.until else None
    except BadTime as exc:
        print(f"attune: {exc}", file=sys.stderr)
        return 2
    chosen = list(all_topics.ALL) if args.all_topics else args.topic
    pool = await create_pool(settings, application_name="events-replay")
    try:
        result = await replay(pool, chosen, since, until, dry_run=args.dry_run)
    finally:
        await pool.close()
    verb = "would be marked" if args.dry_run else "marked"
    window = f"since {since.isoformat()}" + (f" until {until.isoformat()}" if until else "")
    for topic, n in result.by_topic.items():
        print(f"{topic}\t{n}")
    print(
        f"attune: {result.total} events handed to the broker {window} {verb} for replay"
        + (
            ""
            if args.dry_run
            else "; the running services' relays publish them again within "
            f"{settings.outbox_poll_interval_ms} ms, and consumers skip what they already applied"
        ),
        file=sys.stderr,
    )
    if result.oldest_retained is None or result.oldest_retained > since:
        kept = result.oldest_retained.isoformat() if result.oldest_retained else "nothing"
        print(
            f"attune: the outbox keeps sent events for {settings.outbox_retention_hours:g} h "
            f"(ATTUNE_OUTBOX_RETENTION_HOURS); the oldest it still holds for these topics: "
            f"{kept}. Events sent before that cannot be replayed from here.",
            file=sys.stderr,
        )
    return 0


def add_events_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``attune events replay ...``."""
    events = subparsers.add_parser("events", help="event operations (replay after a broker loss)")
    sub = events.add_subparsers(dest="events_command", required=True)
    replay_cmd = sub.add_parser(
        "replay",
        help="publish again the retained events the broker was given since a moment",
        description=(
            "Marks the outbox rows of the topics that were handed to the broker since TIME as "
            "unsent; the running services' relays publish them again in their original order "
            "and every consumer skips the events it already applied. Use it after a broker or "
            "cluster lost acknowledged events (runbook: docs/reliability.md)."
        ),
    )
    which = replay_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--topic", action="append", choices=all_topics.ALL, help="a topic (repeatable)"
    )
    which.add_argument("--all-topics", action="store_true", help="every Attune topic")
    replay_cmd.add_argument(
        "--since",
        required=True,
        help="from when: 2026-11-23T14:05:00Z (with its offset) or a duration ago (30m, 6h, 2d)",
    )
    replay_cmd.add_argument("--until", help="up to when (same forms; default: now)")
    replay_cmd.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed, change nothing"
    )
