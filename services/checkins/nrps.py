"""Names and Role Provisioning (NRPS 2.0): the course roster fetched from the LMS.

- A launch whose claims carry a memberships URL asks for a sync of its course (the roster
  consumer records it in ``checkin_nrps_sync``); a course synced less than
  ``ATTUNE_CHECKIN_NRPS_REFRESH_S`` ago is not asked again, and a failing course waits with
  exponential backoff (``BACKOFF_BASE_S`` doubling, at most ``BACKOFF_MAX_S``).
- A background worker claims due courses (``FOR UPDATE SKIP LOCKED``, so any number of
  replicas may run it), gets an OAuth2 client-credentials token with a ``private_key_jwt``
  assertion signed by the tool key, fetches every page (``Link: <...>; rel="next"``) and
  replaces the course's NRPS membership in one transaction.
- Tokens are cached per (platform, scope set) until ``TOKEN_MARGIN_S`` before they expire and
  dropped when the platform answers 401 (then fetched again once).
- Every request goes through ``OutboundHttp`` (SSRF guard, timeouts, size limits).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from multidict import CIMultiDictProxy

from shared.db import DB_ERRORS, POOL_KEY
from shared.http import HTTP_KEY, OutboundError, OutboundHttp
from shared.keys.signer import SIGNER_KEY, ToolSigner
from shared.logs import get_logger
from shared.lti.roles import role_kinds
from shared.tasks import repeat, stop_task
from shared.web import SETTINGS_KEY

log = get_logger(__name__)

SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIP_MEDIA = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300
TOKEN_MARGIN_S = 60
MAX_PAGES = 200
MAX_PAGE_BYTES = 4 * 1024 * 1024
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 3600
LEASE_S = 300
POLL_S = 1.0
_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
_LIS = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


class NrpsError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Registration:
    platform_id: int
    client_id: str
    token_url: str


@dataclass(frozen=True)
class Member:
    subject: str
    name: str | None
    role_kinds: list[str]


class NrpsClient:
    def __init__(self, http: OutboundHttp, signer: ToolSigner, *, max_lifetime_s: int) -> None:
        self._http = http
        self._signer = signer
        self._lifetime = min(ASSERTION_LIFETIME_S, max_lifetime_s)
        self._tokens: dict[tuple[int, str], tuple[str, float]] = {}

    async def _token(self, reg: Registration, scopes: frozenset[str]) -> str:
        key = (reg.platform_id, " ".join(sorted(scopes)))
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        now = int(time.time())
        assertion = await self._signer.sign(
            {
                "iss": reg.client_id,
                "sub": reg.client_id,
                "aud": reg.token_url,
                "iat": now,
                "exp": now + self._lifetime,
                "jti": str(uuid.uuid4()),
            }
        )
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": key[1],
        }
        status, _, body = await self._request("POST", reg.token_url, data=form)
        if status != 200:
            raise NrpsError(f"token_http_{status}")
        try:
            payload = json.loads(body)
            token = payload["access_token"]
            expires_in = float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise NrpsError("token_malformed") from None
        if not isinstance(token, str) or not token:
            raise NrpsError("token_malformed")
        margin = min(TOKEN_MARGIN_S, expires_in / 2)
        self._tokens[key] = (token, time.monotonic() + expires_in - margin)
        return token

    def drop_token(self, platform_id: int, scopes: frozenset[str]) -> None:
        self._tokens.pop((platform_id, " ".join(sorted(scopes))), None)

    async def _request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        try:
            self._http.check_url(url)
        except OutboundError as exc:
            raise NrpsError(exc.reason) from None
        try:
            async with self._http.session.request(
                method, url, allow_redirects=False, **kwargs
            ) as resp:
                if resp.content_length is not None and resp.content_length > MAX_PAGE_BYTES:
                    raise NrpsError("too_large")
                body = await resp.content.read(MAX_PAGE_BYTES + 1)
                if len(body) > MAX_PAGE_BYTES:
                    raise NrpsError("too_large")
                return resp.status, resp.headers, body
        except TimeoutError:
            raise NrpsError("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NrpsError(f"unreachable:{type(exc).__name__}") from None

    async def members(self, reg: Registration, url: str) -> list[Member]:
        scopes = frozenset({SCOPE})
        out: dict[str, Member] = {}
        next_url: str | None = url
        pages = 0
        retried = False
        while next_url is not None:
            if pages >= MAX_PAGES:
                raise NrpsError("too_many_pages")
            token = await self._token(reg, scopes)
            status, headers, body = await self._request(
                "GET",
                next_url,
                headers={"Authorization": f"Bearer {token}", "Accept": MEMBERSHIP_MEDIA},
            )
            if status == 401 and not retried:
                self.drop_token(reg.platform_id, scopes)
                retried = True
                continue
            if status != 200:
                if status == 401:
                    self.drop_token(reg.platform_id, scopes)
                raise NrpsError(f"members_http_{status}")
            retried = False
            pages += 1
            for member in _parse_page(body):
                out[member.subject] = member
            next_url = _next_link(headers)
        return list(out.values())


def _next_link(headers: CIMultiDictProxy[str]) -> str | None:
    for value in headers.getall("Link", []):
        found = _NEXT.search(value)
        if found:
            return found.group(1)
    return None


def _parse_page(body: bytes) -> list[Member]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise NrpsError("members_not_json") from None
    members = payload.get("members") if isinstance(payload, dict) else None
    if not isinstance(members, list):
        raise NrpsError("members_malformed")
    out = []
    for m in members:
        if not isinstance(m, dict):
            continue
        subject = m.get("user_id")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            continue
        if m.get("status", "Active") != "Active":
            continue  # Inactive or Deleted members do not count
        raw_roles = m.get("roles")
        roles = [
            r if "#" in r or "/" in r else _LIS + r
            for r in (raw_roles if isinstance(raw_roles, list) else [])
            if isinstance(r, str)
        ]
        name = m.get("name")
        out.append(
            Member(
                subject=subject,
                name=name[:200] if isinstance(name, str) else None,
                role_kinds=sorted(set(role_kinds(roles))),
            )
        )
    return out


# --- the sync state and the roster ----------------------------------------------------------


async def request_sync(
    conn: asyncpg.Connection,
    platform_id: int,
    context_id: str,
    nrps_url: str,
    refresh_s: int,
    *,
    token_url: str | None = None,
) -> None:
    """A launch saw a memberships URL: make the course due, unless synced within
    ``refresh_s`` or already waiting (a failing course keeps its backoff). ``token_url``: the
    token endpoint of the launch's environment, when not the platform's own."""
    await conn.execute(
        """
        INSERT INTO checkin_nrps_sync AS s (platform_id, context_id, nrps_url, next_attempt_at,
                                            token_url)
        VALUES ($1, $2, $3, now(), $5)
        ON CONFLICT (platform_id, context_id) DO UPDATE
            SET nrps_url = excluded.nrps_url, token_url = excluded.token_url,
                requested_at = now(),
                next_attempt_at = CASE
                    WHEN s.next_attempt_at IS NOT NULL THEN s.next_attempt_at
                    WHEN s.synced_at IS NULL OR s.synced_at < now() - make_interval(secs => $4)
                        THEN now()
                    ELSE NULL END
        """,
        platform_id,
        context_id,
        nrps_url,
        float(refresh_s),
        token_url,
    )


async def _claim(pool: asyncpg.Pool) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        """
        UPDATE checkin_nrps_sync s SET next_attempt_at = now() + make_interval(secs => $1)
        FROM (SELECT platform_id, context_id FROM checkin_nrps_sync
              WHERE next_attempt_at <= now() ORDER BY next_attempt_at
              LIMIT 1 FOR UPDATE SKIP LOCKED) due
        WHERE s.platform_id = due.platform_id AND s.context_id = due.context_id
        RETURNING s.platform_id, s.context_id, s.nrps_url, s.failures,
                  (SELECT client_id FROM platforms p WHERE p.id = s.platform_id) AS client_id,
                  coalesce(s.token_url, (SELECT token_url FROM platforms p
                                         WHERE p.id = s.platform_id)) AS token_url
        """,
        float(LEASE_S),
    )
    return row


async def store_members(
    pool: asyncpg.Pool, platform_id: int, context_id: str, members: list[Member]
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO course_roster AS ro (platform_id, context_id, subject, name, role_kinds,
                                             last_seen, nrps)
            SELECT $1, $2, m.subject, m.name, string_to_array(m.kinds, ','), '-infinity', true
            FROM unnest($3::text[], $4::text[], $5::text[]) AS m(subject, name, kinds)
            ON CONFLICT (platform_id, context_id, subject) DO UPDATE
                SET nrps = true, name = coalesce(excluded.name, ro.name),
                    role_kinds = excluded.role_kinds
            """,
            platform_id,
            context_id,
            [m.subject for m in members],
            [m.name for m in members],
            [",".join(m.role_kinds) for m in members],
        )
        await conn.execute(
            """
            UPDATE course_roster SET nrps = false
            WHERE platform_id = $1 AND context_id = $2 AND nrps AND subject <> all($3::text[])
            """,
            platform_id,
            context_id,
            [m.subject for m in members],
        )
        await conn.execute(
            """
            UPDATE checkin_nrps_sync
            SET synced_at = now(), failures = 0, next_attempt_at = NULL, last_error = NULL,
                members = $3
            WHERE platform_id = $1 AND context_id = $2
            """,
            platform_id,
            context_id,
            len(members),
        )


async def _failed(pool: asyncpg.Pool, row: asyncpg.Record, reason: str) -> None:
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(row["failures"], 16))
    await pool.execute(
        """
        UPDATE checkin_nrps_sync
        SET failures = failures + 1, last_error = $3,
            next_attempt_at = now() + make_interval(secs => $4)
        WHERE platform_id = $1 AND context_id = $2
        """,
        row["platform_id"],
        row["context_id"],
        reason[:200],
        float(delay),
    )


async def sync_once(pool: asyncpg.Pool, client: NrpsClient) -> bool:
    """Sync one due course; False when none was due."""
    row = await _claim(pool)
    if row is None:
        return False
    course = {"platform_id": row["platform_id"], "context_id": row["context_id"]}
    try:
        if not row["client_id"] or not row["token_url"]:
            raise NrpsError("no_token_url")
        reg = Registration(row["platform_id"], row["client_id"], row["token_url"])
        members = await client.members(reg, row["nrps_url"])
    except NrpsError as exc:
        log.warning("nrps_sync_failed", reason=exc.reason, failures=row["failures"] + 1, **course)
        await _failed(pool, row, exc.reason)
        return True
    except Exception as exc:  # the signer being unavailable, among others: back off too
        log.warning("nrps_sync_failed", reason=type(exc).__name__, **course)
        await _failed(pool, row, type(exc).__name__)
        return True
    await store_members(pool, row["platform_id"], row["context_id"], members)
    log.info("nrps_synced", members=len(members), **course)
    return True


NRPS_KEY = web.AppKey("nrps_client", NrpsClient)


async def nrps_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the sync worker (needs ``http_ctx`` and ``signer_ctx``)."""
    client = NrpsClient(
        app[HTTP_KEY], app[SIGNER_KEY], max_lifetime_s=app[SETTINGS_KEY].key_token_lifetime_s
    )
    app[NRPS_KEY] = client
    pool = app[POOL_KEY]

    async def sync() -> bool:
        return await sync_once(pool, client)

    task = asyncio.create_task(
        repeat(sync, every_s=POLL_S, errors=DB_ERRORS, event="nrps_worker_error"),
        name="checkins-nrps-sync",
    )
    yield
    await stop_task(task)
