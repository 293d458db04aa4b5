"""Tool keys end to end: the jwks service, the key store, the signer and ``attune keys``, on
real Postgres and the real broker.

Rotations are driven by an injected clock: each step moves the store's time on, lets the
replicas act, fetches the JWKS as a platform would, signs with the signer, and every token is
then checked against every JWKS a platform could still (or already) hold when it arrives.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devstack.embedded import EmbeddedPostgres, free_port
from services.jwks.app import JWKS_PATH, KEYS_KEY, create_app
from shared.app import service_app
from shared.errors import Unavailable
from shared.events import topics
from shared.events.envelope import Event
from shared.keys.crypto import KeyConfigError, WrappedKey, keks_from_settings, load_public_der
from shared.keys.signer import SIGNER_KEY, ToolSigner, signer_ctx
from shared.keys.store import KeyStore, list_keys
from shared.logs import configure_logging
from shared.migrate import upgrade
from shared.settings import Settings
from tests.conftest import Infra

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLISH_AHEAD_S = 300
TOKEN_LIFETIME_S = 60
MAX_AGE_S = 75  # min(300, publish-ahead / 4)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def fast_settings(infra: Infra, **overrides: Any) -> Settings:
    """Short, legal timings: 5 min publish-ahead, 1 min tokens, rotation every 15 min."""
    values: dict[str, Any] = {
        "key_publish_ahead_s": PUBLISH_AHEAD_S,
        "key_token_lifetime_s": TOKEN_LIFETIME_S,
        "key_rotation_days": 900 / 86400,
    }
    values.update(overrides)
    return infra.settings(**values)


def new_kek(kek_id: str) -> str:
    return f"{kek_id}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture
async def empty_keys(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE tool_keys")


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging(service="jwks", level="DEBUG", fmt="json", stream=buf)
    yield buf
    configure_logging(service="test", level="WARNING", fmt="json")


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verifies(token: str, jwks: dict[str, Any]) -> bool:
    """What a platform does: pick the key by kid, check the RS256 signature. Independent of
    the code under test (cryptography only)."""
    header_b64, payload_b64, sig_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    jwk = next((k for k in jwks["keys"] if k["kid"] == header["kid"]), None)
    if jwk is None:
        return False
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(jwk["e"]), "big"),
        int.from_bytes(b64url_decode(jwk["n"]), "big"),
    ).public_key()
    try:
        public.verify(
            b64url_decode(sig_b64),
            f"{header_b64}.{payload_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        return False
    return True


def kid_of(token: str) -> str:
    return str(json.loads(b64url_decode(token.split(".")[0]))["kid"])


def claims(clock: FakeClock, lifetime: int = TOKEN_LIFETIME_S) -> dict[str, Any]:
    iat = int(clock().timestamp())
    return {"iss": "client-1", "aud": "https://platform.example", "iat": iat, "exp": iat + lifetime}


async def jwks_of(client: TestClient) -> dict[str, Any]:
    resp = await client.get(JWKS_PATH)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def wait_until(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.1)


def attune(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attune.cli", *args],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def attune_async(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "attune.cli", *args, cwd=REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def serve_jwks(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "attune.cli", "serve", "jwks", "--port", str(port)]
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


# --- the rotation, as platforms see it ------------------------------------------------------


async def test_tokens_verify_against_every_jwks_a_platform_may_hold(
    aiohttp_client: Any, infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = fast_settings(infra)
    clock = FakeClock()
    app = create_app(settings, now=clock)
    client = await aiohttp_client(app)
    replica = KeyStore(pool, settings, now=clock)  # a second jwks replica on the same schedule
    # `fresh` learns of every change at once (key events); `lagging` one step (30 s) late,
    # the worst a signer does without events (SIGNER_RELOAD_S).
    fresh = ToolSigner(pool, settings, now=clock, reload_after_s=3600)
    lagging = ToolSigner(pool, settings, now=clock, reload_after_s=3600)
    step = 30
    snapshots: list[tuple[datetime, dict[str, Any]]] = []
    tokens: list[tuple[datetime, str]] = []
    for i in range(120):  # one hour: four rotations
        await replica.maintain()
        if i % 2 == 0:  # the serving replica reloads only every 60 s (JWKS_RELOAD_S)
            await app[KEYS_KEY].cache.reload()
        jwks = await jwks_of(client)
        assert jwks["keys"], "the JWKS is never empty"
        snapshots.append((clock(), jwks))
        fresh.invalidate()
        tokens.append((clock(), await fresh.sign(claims(clock))))
        tokens.append((clock(), await lagging.sign(claims(clock))))
        lagging.invalidate()
        clock.advance(step)

    keys = await replica.list_keys()
    assert len(keys) >= 5, keys
    assert sum(k.state == "removed" for k in keys) >= 3
    used = {kid_of(t) for _, t in tokens}
    assert len(used) >= 4

    # A platform may use a JWKS fetched up to one cache period (publish-ahead) before a token
    # arrives, served by an HTTP cache up to max-age old; it may also fetch a fresh one at any
    # moment until the token expires.
    checks = 0
    for signed_at, token in tokens:
        for fetched_at, jwks in snapshots:
            earliest = signed_at - timedelta(seconds=PUBLISH_AHEAD_S + MAX_AGE_S)
            latest = signed_at + timedelta(seconds=TOKEN_LIFETIME_S)
            if earliest <= fetched_at <= latest:
                assert verifies(token, jwks), (signed_at, kid_of(token), fetched_at)
                checks += 1
    assert checks > 3000

    # Each key appeared in the JWKS long enough before it signed, and stayed long enough after.
    for key in keys:
        seen = [at for at, jwks in snapshots if key.kid in {k["kid"] for k in jwks["keys"]}]
        signed = [at for at, t in tokens if kid_of(t) == key.kid]
        if key.activated_at is not None and key.activated_at > T0 and signed:
            assert min(seen) <= min(signed) - timedelta(seconds=PUBLISH_AHEAD_S + MAX_AGE_S)
        if key.retired_at is not None and signed:
            assert max(seen) >= max(signed) + timedelta(seconds=TOKEN_LIFETIME_S)
        if key.state == "removed":
            assert key.removed_at is not None and key.retired_at is not None
            assert key.removed_at - key.retired_at >= timedelta(
                seconds=TOKEN_LIFETIME_S + PUBLISH_AHEAD_S
            )
            assert max(seen) < snapshots[-1][0]  # really gone from the JWKS


async def test_retired_key_stays_published_exactly_until_its_tokens_expired(
    aiohttp_client: Any, infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = fast_settings(infra)
    clock = FakeClock()
    store = KeyStore(pool, settings, now=clock)
    await store.maintain()
    [first] = await store.list_keys()
    await store.rotate(activate_now=True)
    retired_at = clock()
    app = create_app(settings, now=clock)
    client = await aiohttp_client(app)
    keep = timedelta(seconds=TOKEN_LIFETIME_S + PUBLISH_AHEAD_S)

    clock.now = retired_at + keep - timedelta(seconds=1)
    assert not (await store.maintain()).changed
    await app[KEYS_KEY].cache.reload()
    assert first.kid in {k["kid"] for k in (await jwks_of(client))["keys"]}

    clock.now = retired_at + keep
    result = await store.maintain()
    assert [(k.kid, k.state) for k in result.changes] == [(first.kid, "removed")]
    await app[KEYS_KEY].cache.reload()
    assert first.kid not in {k["kid"] for k in (await jwks_of(client))["keys"]}
    row = await pool.fetchrow("SELECT * FROM tool_keys WHERE kid = $1", first.kid)
    assert row["state"] == "removed" and row["private_key"] is None and row["nonce"] is None


# --- replicas racing -----------------------------------------------------------------------


async def test_concurrent_replicas_create_exactly_one_key(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = fast_settings(infra)
    clock = FakeClock()
    pools = [await asyncpg.create_pool(infra.database_url, min_size=1, max_size=2) for _ in "ab"]
    try:
        stores = [KeyStore(p, settings, now=clock) for p in pools]
        for _ in range(3):
            await pool.execute("TRUNCATE tool_keys, outbox")
            results = await asyncio.gather(*(s.maintain() for s in stores))
            assert sorted(len(r.changes) for r in results) == [0, 1]
            keys = await stores[0].list_keys()
            assert [k.state for k in keys] == ["current"]
            events = await pool.fetch("SELECT event_type FROM outbox ORDER BY seq")
            assert [e["event_type"] for e in events] == ["key.published", "key.activated"]

        clock.advance(900)  # the next key is due: both replicas notice at once
        await asyncio.gather(*(s.maintain() for s in stores))
        assert sorted(k.state for k in await stores[0].list_keys()) == ["current", "next"]
        await asyncio.gather(*(s.rotate() for s in stores))  # a pending next key is reused
        assert sorted(k.state for k in await stores[0].list_keys()) == ["current", "next"]
    finally:
        for p in pools:
            await p.close()


async def test_two_processes_rotating_at_once_publish_one_key(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = infra.settings()
    await KeyStore(pool, settings).maintain()
    results = await asyncio.gather(*(attune_async(infra.env, "keys", "rotate") for _ in "ab"))
    outputs = []
    for code, out, err in results:
        assert code == 0, err
        outputs.append(out)
    async with pool.acquire() as conn:
        keys = await list_keys(conn)
    upcoming = [k.kid for k in keys if k.state == "next"]
    assert len(upcoming) == 1 and len(keys) == 2
    assert sorted(o.split()[2] for o in outputs) == ["already", "published"]
    assert all(upcoming[0] in o for o in outputs)


async def test_two_jwks_processes_starting_on_an_empty_store_create_one_key(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    ports = [free_port(), free_port()]
    procs = [await serve_jwks(infra.env, port) for port in ports]
    try:
        async with aiohttp.ClientSession() as http:

            async def both_ready() -> bool:
                for port in ports:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            if resp.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
                return True

            await wait_until(both_ready, timeout=30, what="both jwks processes ready")
            bodies = []
            for port in ports:
                async with http.get(f"http://127.0.0.1:{port}{JWKS_PATH}") as resp:
                    bodies.append(await resp.read())
        keys = await pool.fetch("SELECT kid, state FROM tool_keys")
        assert [k["state"] for k in keys] == ["current"]
        assert bodies[0] == bodies[1]
        assert [k["kid"] for k in json.loads(bodies[0])["keys"]] == [keys[0]["kid"]]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 20)


# --- key-encryption keys -------------------------------------------------------------------


async def start_up(app: web.Application) -> None:
    """Run the app's start-up as `attune serve` would, and clean up whatever started."""
    runner = web.AppRunner(app)
    try:
        await runner.setup()
    finally:
        await runner.cleanup()


async def test_wrong_kek_fails_start_up_with_a_clear_error(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    await KeyStore(pool, infra.settings()).maintain()  # a key wrapped with the suite's KEK
    wrong = infra.settings(key_encryption_keys=new_kek("test1"))
    with pytest.raises(KeyConfigError) as exc:
        await start_up(create_app(wrong))
    message = str(exc.value)
    assert message.startswith("invalid configuration: ATTUNE_KEY_ENCRYPTION_KEYS entry 'test1'")
    assert "cannot decrypt tool key" in message

    unknown = infra.settings(key_encryption_keys=new_kek("other"))
    with pytest.raises(KeyConfigError, match=r"wrapped with KEK 'test1'.*configured: other"):
        await start_up(create_app(unknown))

    # The real command: one line naming the variable, exit status 2, no traceback.
    port = str(free_port())
    for value in (new_kek("test1"), "test1:tooshort", ""):
        env = {**infra.env, "ATTUNE_KEY_ENCRYPTION_KEYS": value}
        code, out, err = await attune_async(env, "serve", "jwks", "--port", port)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("attune: invalid configuration: ATTUNE_KEY_ENCRYPTION_KEYS")
        assert "Traceback" not in err + out
        if value:
            assert value.partition(":")[2] not in err + out


async def test_kek_rotation_by_rewrap(infra: Infra, pool: asyncpg.Pool, empty_keys: None) -> None:
    old = infra.env["ATTUNE_KEY_ENCRYPTION_KEYS"]
    clock = FakeClock()
    store = KeyStore(pool, fast_settings(infra), now=clock)
    await store.maintain()
    await store.rotate()  # a current and a next key, both under the old KEK
    new = new_kek("kek2")

    # Step 1: the new KEK goes first; both unwrap. Step 2: rewrap. Step 3: drop the old one.
    both = {**infra.env, "ATTUNE_KEY_ENCRYPTION_KEYS": f"{new},{old}"}
    result = attune(both, "keys", "rewrap")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rewrapped 2 key(s) with KEK 'kek2'; 0 already used it"
    rows = await pool.fetch("SELECT kek_id FROM tool_keys")
    assert {r["kek_id"] for r in rows} == {"kek2"}

    only_new = infra.settings(key_encryption_keys=new)
    assert await KeyStore(pool, only_new).verify_keks() == 2
    token = await ToolSigner(pool, only_new).sign(claims(FakeClock(datetime.now(UTC))))
    assert token.count(".") == 2
    with pytest.raises(KeyConfigError, match=r"wrapped with KEK 'kek2'"):
        await KeyStore(pool, infra.settings()).verify_keks()

    # Rewrap needs every key's KEK; with a KEK missing it changes nothing and says which.
    third = {**infra.env, "ATTUNE_KEY_ENCRYPTION_KEYS": new_kek("kek3")}
    result = attune(third, "keys", "rewrap")
    assert result.returncode == 2
    assert result.stderr.startswith("attune: invalid configuration: tool key ")
    assert "'kek2'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {r["kek_id"] for r in await pool.fetch("SELECT kek_id FROM tool_keys")} == {"kek2"}


# --- the signer ----------------------------------------------------------------------------


async def test_signer_follows_the_current_key(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = infra.settings()
    clock = FakeClock(datetime.now(UTC))
    signer = ToolSigner(pool, settings, now=clock, reload_after_s=0.5)
    with pytest.raises(Unavailable) as exc:
        await signer.sign(claims(clock))
    assert exc.value.code == "signing_key_unavailable"

    store = KeyStore(pool, settings, now=clock)
    await store.maintain()
    first = await signer.sign(claims(clock))
    [current] = await store.list_keys()
    assert kid_of(first) == current.kid == signer.kid

    # Without any event the signer switches within its reload period...
    rotated = await store.rotate(activate_now=True)
    assert kid_of(await signer.sign(claims(clock))) == current.kid  # still cached
    await asyncio.sleep(0.6)
    assert kid_of(await signer.sign(claims(clock))) == rotated.next_key.kid
    # ...and on a key event at once.
    again = await store.rotate(activate_now=True)
    await signer.on_key_event(Event(type="key.activated", source="t", subject="x", data={}))
    assert kid_of(await signer.sign(claims(clock))) == again.next_key.kid

    for bad in ({"iss": "x"}, {"exp": "soon"}, {"exp": True}, claims(clock, lifetime=3601)):
        with pytest.raises(ValueError, match="exp"):
            await signer.sign(bad)


async def test_signer_ctx_switches_keys_on_broker_events(
    aiohttp_client: Any, infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = infra.settings()
    store = KeyStore(pool, settings, source="attune-cli")
    await store.maintain()

    async def sign(request: web.Request) -> web.Response:
        now = int(datetime.now(UTC).timestamp())
        token = await request.app[SIGNER_KEY].sign({"iat": now, "exp": now + 60})
        return web.Response(text=token)

    app = service_app(settings, service="checkins", relays_events=False)
    app.cleanup_ctx.append(signer_ctx)
    app.router.add_get("/sign", sign)
    client = await aiohttp_client(app)
    first = kid_of(await (await client.get("/sign")).text())
    rotated = await store.rotate(activate_now=True)

    # No relay runs here and the signer's own reload period is 30 s: only an event that
    # reaches its listener through the broker can make it switch within the test.
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=False)
    await producer.start()
    try:
        event = Event(type="key.activated", source="tests", subject=rotated.next_key.kid, data={})

        async def switched() -> bool:
            if kid_of(await (await client.get("/sign")).text()) == rotated.next_key.kid:
                return True
            await producer.send_and_wait(topics.KEY, event.encode(), key=b"k")
            return False

        await wait_until(switched, timeout=20, what="the signer switching on a key event")
    finally:
        await producer.stop()
    assert first != rotated.next_key.kid


# --- the JWKS endpoint ---------------------------------------------------------------------


async def test_jwks_endpoint_caching_headers(
    aiohttp_client: Any, infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    client = await aiohttp_client(create_app(infra.settings()))  # defaults: 1 h publish-ahead
    resp = await client.get(JWKS_PATH)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Content-Type"].startswith("application/json")
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    body = await resp.json()
    [key] = body["keys"]
    assert set(key) == {"kty", "kid", "alg", "use", "n", "e"}
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert len(b64url_decode(key["n"])) * 8 >= 2048

    for if_none_match in (etag, f"W/{etag}", f'"nope", {etag}'):
        resp = await client.get(JWKS_PATH, headers={"If-None-Match": if_none_match})
        assert resp.status == 304
        assert resp.headers["ETag"] == etag
        assert resp.headers["Cache-Control"] == "public, max-age=300"
        assert await resp.read() == b""
    resp = await client.get(JWKS_PATH, headers={"If-None-Match": '"stale"'})
    assert resp.status == 200 and resp.headers["ETag"] == etag

    ready = await (await client.get("/readyz")).json()
    assert ready["checks"]["keys"] == {"ok": True, "required": True}


async def test_jwks_refreshes_on_a_key_event_through_the_broker(
    aiohttp_client: Any, infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    settings = infra.settings()
    app = create_app(settings)
    client = await aiohttp_client(app)
    cache = app[KEYS_KEY].cache
    before = await client.get(JWKS_PATH)
    etag = before.headers["ETag"]

    # The listener starts at the end of the topic: wait until it demonstrably receives.
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=False)
    await producer.start()
    try:
        probe = Event(type="key.probe", source="tests", subject="probe", data={})

        async def listening() -> bool:
            if cache.events_received:
                return True
            await producer.send_and_wait(topics.KEY, probe.encode(), key=b"probe")
            await asyncio.sleep(0.4)
            return cache.events_received > 0

        await wait_until(listening, timeout=20, what="the key-event listener")
    finally:
        await producer.stop()
    received = cache.events_received

    # Another process (the CLI, another replica) rotates: only the event can tell this app.
    other = KeyStore(pool, settings, source="attune-cli")
    rotated = await other.rotate()
    started = asyncio.get_running_loop().time()

    async def refreshed() -> bool:
        resp = await client.get(JWKS_PATH)
        return rotated.next_key.kid in {k["kid"] for k in (await resp.json())["keys"]}

    await wait_until(refreshed, timeout=10, what="JWKS refresh after the key event")
    assert asyncio.get_running_loop().time() - started < 10
    assert cache.events_received > received
    resp = await client.get(JWKS_PATH, headers={"If-None-Match": etag})
    assert resp.status == 200 and resp.headers["ETag"] != etag


async def test_jwks_served_from_memory_and_never_empty(
    aiohttp_client: Any, infra: Infra, own_postgres: EmbeddedPostgres
) -> None:
    await asyncio.to_thread(upgrade, own_postgres.url)
    own_postgres.stop()
    settings = infra.settings(database_url=own_postgres.url)
    client = await aiohttp_client(create_app(settings))

    # Postgres down at start: not ready, and a 503 with a code rather than an empty set.
    resp = await client.get(JWKS_PATH, headers={"Accept": "application/json"})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "jwks_unavailable"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["keys"]["ok"] is False

    own_postgres.start()  # not in a thread: PDEATHSIG follows the forking thread

    async def serving() -> bool:
        return (await client.get(JWKS_PATH)).status == 200

    await wait_until(serving, timeout=20, what="JWKS after Postgres came up")
    first = await client.get(JWKS_PATH)
    body, etag = await first.read(), first.headers["ETag"]

    # Postgres gone: every request is still answered, from memory, with the same bytes.
    own_postgres.stop()
    for _ in range(50):
        resp = await client.get(JWKS_PATH)
        assert resp.status == 200
        assert await resp.read() == body
        assert resp.headers["ETag"] == etag
    resp = await client.get(JWKS_PATH, headers={"If-None-Match": etag})
    assert resp.status == 304


# --- no private key material anywhere ------------------------------------------------------


def private_fragments(key: rsa.RSAPrivateKey) -> list[str]:
    """Every textual form of the private part a leak could take."""
    numbers = key.private_numbers()
    fragments = []
    for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        fragments.append(base64.urlsafe_b64encode(raw).decode().rstrip("=")[:40])
        fragments.append(base64.b64encode(raw).decode()[:40])
        fragments.append(str(value)[:40])
        fragments.append(raw.hex()[:40])
    # PEM and DER start with the public modulus, which the JWKS rightly contains; from the
    # ninth PEM line (byte ~430) on, they hold only private numbers.
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        fragments += [line for line in pem.decode().splitlines()[9:-1] if len(line) >= 40]
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fragments.append(base64.b64encode(der).decode()[600:660])
    return fragments


async def test_private_keys_never_leave_the_store(
    aiohttp_client: Any,
    infra: Infra,
    pool: asyncpg.Pool,
    empty_keys: None,
    log_buffer: io.StringIO,
) -> None:
    settings = fast_settings(infra)
    clock = FakeClock()
    app = create_app(settings, now=clock)
    client = await aiohttp_client(app)
    store = KeyStore(pool, settings, now=clock)
    signer = ToolSigner(pool, settings, now=clock)
    outputs: list[str] = []
    for _ in range(40):  # two full rotations, with removals
        await store.maintain()
        await app[KEYS_KEY].cache.reload()
        outputs.append(await (await client.get(JWKS_PATH)).text())
        signer.invalidate()
        outputs.append(await signer.sign(claims(clock)))
        clock.advance(60)
    await store.rotate(activate_now=True)
    outputs.append(await (await client.get("/readyz")).text())
    outputs.append(await (await client.get("/metrics")).text())
    try:
        await KeyStore(pool, infra.settings(key_encryption_keys=new_kek("test1"))).verify_keks()
    except KeyConfigError as exc:
        outputs.append(str(exc))
    listing = attune(infra.env, "keys", "list")
    assert listing.returncode == 0, listing.stderr
    outputs += [listing.stdout, listing.stderr]
    rows = await pool.fetch("SELECT value FROM outbox")
    assert rows
    outputs += [bytes(r["value"]).decode() for r in rows]
    for row in rows:
        data = json.loads(bytes(row["value"]))["data"]
        assert set(data) == {
            "kid",
            "state",
            "created_at",
            "activated_at",
            "retired_at",
            "removed_at",
            "region",  # the cell whose key it is
            "public_key",  # its public half, for the home region's JWKS (shared/cells/keys.py)
        }
        assert load_public_der(base64.b64decode(data["public_key"]))
    logs = log_buffer.getvalue()
    assert '"event": "tool_key_changed"' in logs  # the logs were captured
    outputs.append(logs)

    keks = keks_from_settings(settings)
    wrapped = await pool.fetch(
        "SELECT kid, private_key, kek_id, nonce FROM tool_keys WHERE private_key IS NOT NULL"
    )
    assert len(wrapped) >= 2
    text = "\n".join(outputs)
    for row in wrapped:
        key = keks.unwrap(row["kid"], WrappedKey(row["private_key"], row["kek_id"], row["nonce"]))
        fragments = private_fragments(key)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        assert len(fragments) > 30 and any(f in pem for f in fragments)  # the search works
        for fragment in fragments:
            assert fragment not in text
    kek_secret = settings.key_encryption_keys.get_secret_value().partition(":")[2]  # type: ignore[union-attr]
    assert kek_secret not in text

    # `attune keys list` shows history only.
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split() == ["KID", "STATE", "CREATED", "ACTIVATED", "RETIRED", "REMOVED"]
    assert {line.split()[1] for line in lines[1:]} >= {"current", "retired", "removed"}


async def test_keys_rotate_now_warns_about_platform_caches(
    infra: Infra, pool: asyncpg.Pool, empty_keys: None
) -> None:
    await KeyStore(pool, infra.settings()).maintain()
    result = attune(infra.env, "keys", "rotate", "--now")
    assert result.returncode == 0, result.stderr
    kid = result.stdout.split()[1]
    assert result.stdout.strip() == f"key {kid} is current now"
    assert "cannot verify tokens" in result.stderr and "refetch" in result.stderr
    states = {r["kid"]: r["state"] for r in await pool.fetch("SELECT kid, state FROM tool_keys")}
    assert states[kid] == "current" and sorted(states.values()) == ["current", "retired"]
    events = [
        r["event_type"] for r in await pool.fetch("SELECT event_type FROM outbox ORDER BY seq")
    ]
    assert events[-3:] == ["key.published", "key.retired", "key.activated"]


async def test_keys_commands_need_a_valid_kek(infra: Infra) -> None:
    env = {**infra.env, "ATTUNE_KEY_ENCRYPTION_KEYS": "k1:notbase64!!"}
    result = attune(env, "keys", "rotate")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "attune: invalid configuration: ATTUNE_KEY_ENCRYPTION_KEYS is invalid: "
        "entry 1 is not valid base64"
    )
