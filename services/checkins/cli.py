"""Operator commands of the checkins service (the lead wires them into ``attune``).

``attune checkins erase --platform-id N --subject S``: erase one user's data on a platform.
``attune checkins erase --platform-id N --context-id C``: erase one course's data.
Both are audited (``checkin_audit``) and print the counts as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json

from services.checkins import rights
from services.checkins.privacy import Pseudonyms
from shared.db import create_pool
from shared.settings import Settings
from shared.signing import parse_secrets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``checkins erase`` options, for the ``attune`` parser."""
    parser.add_argument("--platform-id", type=int, required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--subject", help="the LMS user id (sub) whose data goes")
    target.add_argument("--context-id", help="the LMS course (context id) whose data goes")


async def run_erase(args: argparse.Namespace, settings: Settings) -> int:
    pool = await create_pool(settings, application_name="checkins-cli")
    try:
        if args.subject is not None:
            pseudonyms = Pseudonyms(parse_secrets(settings.secret_keys))
            counts = await rights.erase_subject(pool, pseudonyms, args.platform_id, args.subject)
        else:
            counts = await rights.erase_course(pool, args.platform_id, args.context_id)
    finally:
        await pool.close()
    print(json.dumps(counts, sort_keys=True), flush=True)
    return 0
