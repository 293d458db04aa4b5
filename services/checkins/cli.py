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
