"""``attune launches erase``: delete one user's or one course's launch records on a platform.

Launch records hold who launched what, with which roles; the launch service deletes them after
``ATTUNE_LAUNCH_RETENTION_DAYS``. Erasing a user's data everywhere is this command plus
``attune checkins erase`` with the same arguments (docs/checkins.md, *Data rights*). The
``launch.completed`` events already published carry the user too and age out with the outbox
retention and the topic's retention.
"""

from __future__ import annotations

import argparse
import json

from services.launch import queries
from shared.db import create_pool
from shared.logs import get_logger
from shared.settings import Settings

log = get_logger(__name__)


async def run_erase(args: argparse.Namespace, settings: Settings) -> int:
    pool = await create_pool(settings, application_name="launch-cli")
    try:
        deleted = await queries.erase_launches(
            pool, args.platform_id, subject=args.subject, context_id=args.context_id
        )
    finally:
        await pool.close()
    # The log names what was erased by kind only: the subject itself is the personal data.
    log.info(
        "launch_records_erased",
        platform_id=args.platform_id,
        by="subject" if args.subject is not None else "context",
        count=deleted,
    )
    print(json.dumps({"launches": deleted}), flush=True)
    return 0
