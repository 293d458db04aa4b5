"""The platform's public keys as registration sees them: fetched when reachable, judged by the
rule launches use (``shared.lti.platform_keys.parse_jwks``: RS256 signature keys with a kid, RSA of
2048 bits or more).

Both manual and dynamic registration refuse a key set without one usable key, and say so when
the only RSA keys are too short. An unreachable key set is not a refusal (launches fetch it
again); a key set of which some keys are too short is accepted, those keys are never used.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from services.registration import outbound
from shared.http import OutboundError, OutboundHttp
from shared.lti.platform_keys import parse_jwks

MAX_JWKS_BYTES = 128 * 1024

Problem = Literal["private_address", "not_jwks", "no_rs256_key", "weak_keys_only"]


@dataclass
class Judgement:
    problem: Problem | None = None  # a reason to refuse the registration
    warning: str | None = None  # fetched nothing now: launches will try again
    weak_kids: list[str] = field(default_factory=list)  # published but never used


def judge(jwks: object) -> Judgement:
    try:
        usable, weak = parse_jwks(jwks)
    except ValueError:
        return Judgement("not_jwks")
    weak_kids = sorted(kid[:100] for kid in weak)
    if usable:
        return Judgement(weak_kids=weak_kids)
    return Judgement("weak_keys_only" if weak else "no_rs256_key", weak_kids=weak_kids)


async def check(
    http: OutboundHttp, url: str, *, allow_insecure: bool, timeout_s: float
) -> Judgement:
    """Fetch and judge the key set at ``url`` (through the SSRF guard, bounded)."""
    try:
        if not allow_insecure:
            await outbound.refuse_private_names(url, timeout_s)
        jwks: Any = await asyncio.wait_for(
            http.get_json(url, max_bytes=MAX_JWKS_BYTES), timeout_s + 1
        )
    except TimeoutError:
        return Judgement(warning="could not be fetched now (timeout); checked again at launch")
    except OutboundError as exc:
        if exc.reason == "private_address":
            return Judgement("private_address")
        if exc.reason in ("not_json", "too_large"):
            return Judgement("not_jwks")
        return Judgement(
            warning=f"could not be fetched now ({exc.reason}); checked again at launch"
        )
    return judge(jwks)
