"""Pseudonyms for anonymous answers.

An anonymous answer is stored under HMAC(key, course, check-in, subject): the respondent's own
launch can recompute it (to show or change the answer) but the database, the API, events and
logs never hold the subject, and pseudonyms differ per check-in so anonymous answers cannot be
linked with each other. The key is derived from ``ATTUNE_SECRET_KEYS`` for this purpose only;
after a secret rotation, answers stored under a retired secret are found with the older keys
and moved to the current pseudonym when changed.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.signing import b64url, derive_keys

PURPOSE = "attune/checkins/respondent/v1"


class Pseudonyms:
    def __init__(self, secret_keys: list[bytes]) -> None:
        self._keys = derive_keys(secret_keys, PURPOSE)

    def all(self, platform_id: int, context_id: str, checkin_id: int, subject: str) -> list[str]:
        """The current pseudonym first, then those under retired secrets."""
        message = "\x1f".join((str(platform_id), context_id, str(checkin_id), subject)).encode()
        return ["p1:" + b64url(hmac.new(k, message, hashlib.sha256).digest()) for k in self._keys]
