import asyncio
import os
import sys

import asyncpg

from shared.migrate import downgrade, head_revision, upgrade
from tests.conftest import Infra

EXPECTED_TABLES = {
    "alembic_version",
    "outbox",
    "consumed_events",
    "dead_letters",
    "tool_keys",
    "platforms",
    "deployments",
    "used_nonces",
    "launches",
    "deployment_sightings",
}


async def _fresh_db(infra: Infra) -> str:
    return await infra.new_database("attune_mig")


async def _drop(infra: Infra, url: str) -> None:
    await infra.drop_database(url)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_upgrade_from_empty_is_idempotent_and_reversible(infra: Infra) -> None:
    url = await _fresh_db(infra)
    try:
        assert await _tables(url) == set()
        await asyncio.to_thread(upgrade, url)
        assert EXPECTED_TABLES <= await _tables(url)
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)  # second run: nothing to do, no error
        assert EXPECTED_TABLES <= await _tables(url)
        await asyncio.to_thread(downgrade, url, "base")
        assert await _tables(url) == {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        assert EXPECTED_TABLES <= await _tables(url)
    finally:
        await _drop(infra, url)


async def _migrate_command(url: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "attune.cli",
        "migrate",
        env={"PATH": os.environ["PATH"], "DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_attune_migrate_command(infra: Infra) -> None:
    url = await _fresh_db(infra)
    try:
        code, out, err = await _migrate_command(url)
        assert code == 0, err.decode()
        assert b'"event": "migrated"' in out
        assert EXPECTED_TABLES <= await _tables(url)
    finally:
        await _drop(infra, url)


async def test_concurrent_migrate_commands_wait_for_each_other(infra: Infra) -> None:
    """Two rollouts' migration Jobs at once: the advisory lock serialises them."""
    url = await _fresh_db(infra)
    try:
        results = await asyncio.gather(*(_migrate_command(url) for _ in range(3)))
        for code, _out, err in results:
            assert code == 0, err.decode()
        assert EXPECTED_TABLES <= await _tables(url)
    finally:
        await _drop(infra, url)


async def test_0008_backfills_frame_origins(infra: Infra) -> None:
    """Registrations made before 0008 get the LMS page origins their rows imply."""
    url = await _fresh_db(infra)
    try:
        await asyncio.to_thread(upgrade, url, "0007")
        conn = await asyncpg.connect(url)
        try:
            insert = (
                "INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, product, "
                "deployment_policy, platform_config) VALUES ($1, $2, 'https://x/a', "
                "'https://x/j', $3, 'accept', $4::jsonb)"
            )
            config = '{"openid_configuration": "https://School.Instructure.com/api/lti/x?t=1"}'
            await conn.execute(insert, "https://moodle.school.edu/lms", "m", "moodle", "{}")
            await conn.execute(insert, "https://canvas.instructure.com", "c1", "canvas", "{}")
            await conn.execute(insert, "https://canvas.instructure.com", "c2", "canvas", config)
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT client_id, frame_origins FROM platforms")
            got = {r["client_id"]: r["frame_origins"] for r in rows}
        finally:
            await conn.close()
        assert got == {
            "m": ["https://moodle.school.edu"],
            "c1": [],  # hosted Canvas by client id: no school host known
            "c2": ["https://school.instructure.com"],
        }
        await asyncio.to_thread(downgrade, url, "0007")
    finally:
        await _drop(infra, url)


async def test_0013_reregistration_codes_next_to_the_previous_release(infra: Infra) -> None:
    """Codes issued before 0013 stay codes that create (for_platform_id NULL), and the
    previous release's own statements keep working on the migrated table."""
    url = await _fresh_db(infra)
    try:
        await asyncio.to_thread(upgrade, url, "0012")
        conn = await asyncpg.connect(url)
        insert = (
            "INSERT INTO install_codes (code_hash, label, created_by, expires_at) "
            "VALUES (sha256($1::bytea), 'old', 'cli', now() + interval '1 hour') RETURNING id"
        )
        try:
            old = await conn.fetchval(insert, b"issued-before")
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)
        conn = await asyncpg.connect(url)
        try:
            assert (
                await conn.fetchval("SELECT for_platform_id FROM install_codes WHERE id = $1", old)
                is None
            )
            # The previous release inserts and uses up codes without naming the column.
            newer = await conn.fetchval(insert, b"issued-by-old-code")
            used = await conn.fetchval(
                "UPDATE install_codes SET used_at = now(), platform_id = 7 "
                "WHERE id = $1 AND used_at IS NULL AND expires_at > now() RETURNING id",
                newer,
            )
            assert used == newer
        finally:
            await conn.close()
        await asyncio.to_thread(downgrade, url, "0011")
    finally:
        await _drop(infra, url)
