"""Regional cells on one machine (issue 19): a home region and two cells, each with its own
Postgres and broker, 150 ms each way between a cell and home (tests/cells_support.py).

What is proven here, against the real services:

- a registration made, changed, disabled, moved or deleted at home takes effect in every cell
  within seconds, through each cell's own copy (its mirror), with nothing run by hand;
- launches and answers in a cell make no request-path trip to home: none while the links are
  up (no connection opened, launches far faster than one 300 ms round trip), and all succeed
  while every link to home is frozen;
- a cell's launch and check-in rows exist only in its own database, and no name, subject,
  question or answer ever crosses a link; first sightings of deployments (no personal data)
  do, so a held deployment is approved at home;
- each cell signs with its own key, which the home region's one JWKS URL publishes, and a next
  key becomes current only once that JWKS shows it;
- home stopped: the cells keep launching and answering; home back (its broker empty): nothing
  is lost either way. A cell stopped: only its own schools notice.

The servers start once for the module (about half a minute) and the tests run in order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from shared.cells.keys import JwksProbe
from shared.cells.registrations import PLATFORM_COLUMNS
from shared.http import OutboundHttp
from shared.jose import public_jwk
from shared.keys.crypto import load_public_der
from shared.keys.signer import ToolSigner
from shared.keys.store import KeyStore
from tests.cells_support import DELAY_S, Cells, Region, start_cells, wait_for, wait_ready
from tests.fakes.platform import Client, FakePlatform, parse_autopost
from tests.lti_support import browser, full_launch, login

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
JSON = {"Accept": "application/json"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cells() -> AsyncIterator[Cells]:
    async with AsyncExitStack() as exits:
        yield await start_cells(exits)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lms() -> AsyncIterator[FakePlatform]:
    platform = FakePlatform("moodle")
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


def launch_urls(cells: Cells) -> list[str]:
    return [f"{c.url}/lti/launch" for c in cells.cells.values()]


async def register(
    cells: Cells,
    lms: FakePlatform,
    client: Client,
    *,
    region: str | None = None,
    policy: str = "accept",
    deployment: str | None = None,
) -> int:
    """A manual registration at home, as an operator makes it."""
    status, body = await cells.api(
        "POST",
        "/api/admin/platforms",
        {
            "product": "moodle",
            "issuer": lms.issuer,
            "client_id": client.client_id,
            "deployment_id": deployment or client.deployment_id,
            "jwks_url": lms.jwks_url,
            "auth_url": lms.auth_url,
            "token_url": lms.token_url,
            "deployment_policy": policy,
            "region": region,
        },
    )
    assert status in (200, 201), body
    return int(body["platform"]["id"])


async def known(cell: Region, platform_id: int, deployment: str | None = None) -> bool:
    row = await cell.db.fetchrow(
        "SELECT (SELECT status FROM deployments WHERE platform_id = $1 AND deployment_id = $2)"
        " AS status FROM platforms WHERE id = $1",
        platform_id,
        deployment or "",
    )
    return row is not None and (deployment is None or row["status"] == "active")


async def launch(
    cell: Region, lms: FakePlatform, client: Client, sub: str, *, teacher: bool = False
) -> aiohttp.ClientResponse:
    hint = json.dumps({"roles": [INSTRUCTOR if teacher else LEARNER], "n": secrets.token_hex(4)})
    async with browser() as b:
        return await full_launch(b, cell.url, lms, client, login_hint=sub, lti_message_hint=hint)


async def token_of(cell: Region, lms: FakePlatform, client: Client, sub: str, **kw: Any) -> str:
    resp = await launch(cell, lms, client, sub, **kw)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(f"{cell.url}/app/?f="), location  # its own cell's app
    return location.split("#lt=", 1)[1]


async def launches(cell: Region, lms: FakePlatform, client: Client, sub: str) -> bool:
    """Whether a launch in ``cell`` succeeds now (for waiting until a change took effect:
    the cell's caches hear of it moments after its copy of the registrations has it)."""
    hint = json.dumps({"roles": [LEARNER], "n": secrets.token_hex(4)})
    async with browser() as b:
        resp = await login(b, cell.url, lms, client, login_hint=sub, lti_message_hint=hint)
        if resp.status != 302:
            return False
        action, fields = parse_autopost(await (await b.get(resp.headers["Location"])).text())
        return (await b.post(action, data=fields)).status == 303


async def call(cell: Region, token: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{cell.url}/api/checkins{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}", **JSON},
        ) as resp,
    ):
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def refusal(cell: Region, lms: FakePlatform, client: Client) -> str | None:
    """The code a login in ``cell`` is refused with (None: it is accepted)."""
    async with browser() as b:
        resp = await login(b, cell.url, lms, client, headers=JSON)
        if resp.status == 302:
            return None
        return str((await resp.json())["error"]["code"])


def crossed(cells: Cells) -> bytes:
    """Every byte any link carried, in either direction."""
    links = {*cells.links["eu-west-1"].all, *cells.links["ap-southeast-2"].all, cells.public}
    return b"".join(bytes(link.crossing.copy) for link in links)


async def test_a_registration_made_at_home_reaches_every_cell(
    cells: Cells, lms: FakePlatform
) -> None:
    client = lms.add_client(launch_urls(cells))
    started = time.monotonic()
    platform_id = await register(cells, lms, client)
    for cell in cells.cells.values():
        await wait_for(
            lambda cell=cell: known(cell, platform_id, client.deployment_id),
            timeout=60,
            what=f"registration in {cell.name}",
        )
    print(f"registration reached both cells {time.monotonic() - started:.1f} s after it was made")
    # The cells' copies hold every column the column list names, as home holds it, under the
    # home's id; login, launch and checkins read them as they always read registrations.
    columns = ", ".join(PLATFORM_COLUMNS)
    at_home = await cells.home.db.fetchrow(
        f"SELECT {columns} FROM platforms WHERE id = $1", platform_id
    )
    for cell in cells.cells.values():
        copy = await cell.db.fetchrow(f"SELECT {columns} FROM platforms WHERE id = $1", platform_id)
        assert dict(copy) == dict(at_home)
    for cell in cells.cells.values():
        await token_of(cell, lms, client, f"first-{cell.name}")


async def test_launches_and_answers_stay_in_their_cell(cells: Cells, lms: FakePlatform) -> None:
    eu, ap = cells.cells["eu-west-1"], cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    # The deployment launching is not the one registered: its first launch is a sighting.
    platform_id = await register(cells, lms, client, deployment=f"d-{secrets.token_hex(4)}")
    for cell in (eu, ap):
        await wait_for(lambda cell=cell: known(cell, platform_id), what="mirrored")
    tag = secrets.token_hex(4)
    teacher = await token_of(eu, lms, client, f"teacher-{tag}", teacher=True)
    student = await token_of(eu, lms, client, f"student-eu-{tag}")
    question = f"How is the week going, {tag}?"
    status, created = await call(
        eu, teacher, "POST", "/checkins", {"question": question, "allow_note": True}
    )
    assert status == 201, created
    note = f"private note {tag}"
    status, answered = await call(
        eu,
        student,
        "PUT",
        f"/checkins/{created['id']}/response",
        {"emotion": "calm", "note": note},
    )
    assert status == 201, answered
    await token_of(ap, lms, client, f"student-ap-{tag}")

    subjects = {
        "eu-west-1": {f"teacher-{tag}", f"student-eu-{tag}"},
        "ap-southeast-2": {f"student-ap-{tag}"},
    }
    for name, cell in cells.cells.items():
        stored = {
            r["subject"]
            for r in await cell.db.fetch(
                "SELECT subject FROM launches WHERE subject LIKE $1", f"%{tag}"
            )
        }
        assert stored == subjects[name]
    assert await eu.db.fetchval("SELECT count(*) FROM checkins WHERE question = $1", question) == 1
    assert await eu.db.fetchval("SELECT count(*) FROM checkin_responses WHERE note = $1", note) == 1
    assert not await ap.db.fetchval("SELECT count(*) FROM checkins WHERE question = $1", question)
    # Home holds registrations and keys, never a launch or an answer.
    for table in ("launches", "checkins", "checkin_responses", "course_roster", "used_nonces"):
        assert await cells.home.db.fetchval(f"SELECT count(*) FROM {table}") == 0, table

    # The first sighting of the deployment (what and where, no one's data) reaches home.
    async def sighted() -> bool:
        _, body = await cells.api("GET", f"/api/admin/platforms/{platform_id}")
        seen = [d for d in body["platform"]["deployments"] if d["source"] == "launch"]
        return [(d["deployment_id"], d["seen_in"]) for d in seen] == [
            (client.deployment_id, ["eu-west-1", "ap-southeast-2"])
        ]

    await wait_for(sighted, what="sightings at home")

    # What those launches showed (the LMS shared names; where they were seen) reaches home too.
    async def observed() -> bool:
        _, body = await cells.api("GET", f"/api/admin/platforms/{platform_id}")
        [shown] = [
            d["launches_show"]
            for d in body["platform"]["deployments"]
            if d["deployment_id"] == client.deployment_id
        ]
        return (
            shown is not None
            and shown["names_shared"] is True
            and sorted(shown["observed_in"]) == ["ap-southeast-2", "eu-west-1"]
        )

    await wait_for(observed, what="observations at home")
    assert await cells.home.db.fetchval("SELECT count(*) FROM deployment_observations") == 0
    # Nothing personal ever crossed a link: no subject, name, question or note.
    wire = crossed(cells)
    assert client.deployment_id.encode() in wire  # the links carry what crosses ...
    for secret in (*subjects["eu-west-1"], *subjects["ap-southeast-2"], question, note):
        assert secret.encode() not in wire, secret  # ... and never this
    assert b"Person " not in wire


async def test_launches_and_answers_never_wait_on_home(cells: Cells, lms: FakePlatform) -> None:
    eu = cells.cells["eu-west-1"]
    links = cells.links_of(eu.name)
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(cells, lms, client)
    await wait_for(lambda: known(eu, platform_id, client.deployment_id), what="mirrored")
    teacher = await token_of(eu, lms, client, "burst-teacher", teacher=True)
    _, created = await call(eu, teacher, "POST", "/checkins", {"question": "Burst?"})
    await token_of(eu, lms, client, "burst-warm-up")

    async def burst(label: str, n: int) -> list[float]:
        """n launches, each followed by its student's answer; the launch POSTs' latencies."""
        latencies = []
        for i in range(n):
            hint = json.dumps({"roles": [LEARNER], "n": secrets.token_hex(4)})
            async with browser() as b:
                resp = await login(
                    b, eu.url, lms, client, login_hint=f"{label}-{i}", **{"lti_message_hint": hint}
                )
                assert resp.status == 302, await resp.text()
                auth = await b.get(resp.headers["Location"])
                action, fields = parse_autopost(await auth.text())
                started = time.monotonic()
                done = await b.post(action, data=fields)
                latencies.append(time.monotonic() - started)
            assert done.status == 303, await done.text()
            token = done.headers["Location"].split("#lt=", 1)[1]
            status, _ = await call(
                eu, token, "PUT", f"/checkins/{created['id']}/response", {"emotion": "happy"}
            )
            assert status == 201
        return latencies

    # Links up: the request path opens no connection to home, and a launch is far faster
    # than the one 300 ms round trip a request-path call to home would add.
    since = time.monotonic()
    latencies = await burst("live", 20)
    assert [link.crossing.opened_since(since) for link in links] == [0, 0, 0]
    median = statistics.median(latencies)
    print(f"launch POST in a cell, links up: median {median * 1000:.0f} ms")
    assert median < 2 * DELAY_S

    # Every link to home frozen (nothing delivered, nothing closed): all still succeed.
    for link in links:
        link.freeze()
    try:
        frozen = await burst("frozen", 10)
    finally:
        for link in links:
            link.heal()
    print(
        f"launch POST in a cell, home unreachable: median {statistics.median(frozen) * 1000:.0f} ms"
    )
    assert (
        await eu.db.fetchval(
            "SELECT count(*) FROM checkin_responses WHERE checkin_id = $1", created["id"]
        )
        == 30
    )


async def test_changes_made_at_home_take_effect_in_the_cells(
    cells: Cells, lms: FakePlatform
) -> None:
    eu, ap = cells.cells["eu-west-1"], cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(cells, lms, client)
    await wait_for(lambda: known(eu, platform_id, client.deployment_id), what="mirrored")
    student = await token_of(eu, lms, client, "changes-student")
    teacher = await token_of(eu, lms, client, "changes-teacher", teacher=True)
    deployment = {"deployment_id": client.deployment_id}
    path = f"/api/admin/platforms/{platform_id}"

    # Disabled at home: logins in the cells refuse it, and the cell's app turns read-only
    # (its checkins projection hears it from the cell's own copy of the registrations).
    assert (await cells.api("POST", f"{path}/deployments/disable", deployment))[0] == 200
    for cell in (eu, ap):
        await wait_for(
            lambda cell=cell: _refused_with(cell, lms, client, "deployment_disabled"),
            what=f"disabled in {cell.name}",
        )

    async def read_only() -> bool:
        status, body = await call(eu, teacher, "POST", "/checkins", {"question": "Still?"})
        return status == 403 and body["error"]["code"] == "deployment_read_only"

    await wait_for(read_only, what="read-only in the cell's app")
    assert (await call(eu, student, "GET", "/checkins"))[0] == 200  # reading still works

    # Approved again: launches and writes come back.
    assert (await cells.api("POST", f"{path}/deployments/approve", deployment))[0] == 200
    await wait_for(lambda: _refused_with(eu, lms, client, None), what="approved in eu")

    async def writable() -> bool:
        status, _ = await call(eu, teacher, "POST", "/checkins", {"question": "Again?"})
        return status == 201

    await wait_for(writable, what="writable again")

    # Moved to one region: the other refuses it, with that region's login URL.
    status, _ = await cells.api("PUT", f"{path}/region", {"region": ap.name})
    assert status == 200
    await wait_for(
        lambda: _refused_with(eu, lms, client, "platform_other_region"), what="moved out of eu"
    )
    assert await refusal(ap, lms, client) is None

    # Deleted at home: gone from every cell.
    assert (await cells.api("DELETE", path))[0] == 200
    for cell in (eu, ap):
        await wait_for(
            lambda cell=cell: _refused_with(cell, lms, client, "platform_unknown"),
            what=f"deleted in {cell.name}",
        )
        assert not await cell.db.fetchval(
            "SELECT count(*) FROM platforms WHERE id = $1", platform_id
        )


async def _refused_with(cell: Region, lms: FakePlatform, client: Client, code: str | None) -> bool:
    return await refusal(cell, lms, client) == code


async def test_a_deployment_held_in_a_cell_is_approved_at_home(
    cells: Cells, lms: FakePlatform
) -> None:
    ap = cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(
        cells, lms, client, policy="hold", deployment=f"d-{secrets.token_hex(4)}"
    )
    await wait_for(lambda: known(ap, platform_id), what="mirrored")
    held = await launch(ap, lms, client, "held-student")
    assert held.status == 403 and "deployment_pending" in await held.text()

    async def pending_at_home() -> bool:
        _, body = await cells.api("GET", f"/api/admin/platforms/{platform_id}")
        return {
            (d["deployment_id"], d["status"], tuple(d.get("seen_in") or ()))
            for d in body["platform"]["deployments"]
            if d["source"] == "launch"
        } == {(client.deployment_id, "pending", ("ap-southeast-2",))}

    await wait_for(pending_at_home, what="the held deployment shown at home")
    status, _ = await cells.api(
        "POST",
        f"/api/admin/platforms/{platform_id}/deployments/approve",
        {"deployment_id": client.deployment_id},
    )
    assert status == 200
    await wait_for(
        lambda: launches(ap, lms, client, "held-student"), what="the approval in the cell"
    )


async def _public_jwks(cells: Cells) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{cells.home.settings.public_url}/.well-known/jwks.json") as resp,  # type: ignore[union-attr]
    ):
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
        return document


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_each_cell_signs_with_its_own_key_and_home_publishes_it(
    cells: Cells,
) -> None:
    kids: dict[str, str] = {}
    for name, cell in cells.cells.items():

        async def current(cell: Region = cell) -> bool:
            return bool(await cell.db.fetchval("SELECT kid FROM tool_keys WHERE state = 'current'"))

        await wait_for(current, what=f"{name} has a key")
        kids[name] = await cell.db.fetchval("SELECT kid FROM tool_keys WHERE state = 'current'")
        assert kids[name].startswith(f"{name}.")

    async def published() -> bool:
        got = {k["kid"] for k in (await _public_jwks(cells))["keys"]}
        return set(kids.values()) <= got

    await wait_for(published, what="the cells' keys in the home JWKS")
    document = await _public_jwks(cells)
    assert any("." not in k["kid"] for k in document["keys"])  # home's own key too

    # What a cell signs (an NRPS client assertion, a deep-linking response) verifies with the
    # registration's one JWKS URL.
    eu = cells.cells["eu-west-1"]
    assert eu.settings is not None
    signer = ToolSigner(eu.db, eu.settings)
    now = int(time.time())
    token = await signer.sign({"iss": "tool", "aud": "lms", "iat": now, "exp": now + 60})
    header = json.loads(_b64(token.split(".")[0]))
    assert header["kid"] == kids["eu-west-1"]
    [jwk] = [k for k in document["keys"] if k["kid"] == header["kid"]]
    row = await eu.db.fetchrow(
        "SELECT public_key, private_key FROM tool_keys WHERE kid = $1", jwk["kid"]
    )
    assert public_jwk(load_public_der(row["public_key"]), jwk["kid"]) == jwk
    # Its private half never left the cell, not even wrapped.
    assert bytes(row["private_key"]) not in crossed(cells)
    assert not await cells.home.db.fetchval(
        "SELECT count(*) FROM tool_keys WHERE kid = $1", jwk["kid"]
    )

    # Rotation in a cell: the next key becomes current only once the home JWKS shows it.
    clock = Clock()
    http = OutboundHttp(eu.settings)
    try:
        store = KeyStore(
            eu.db,
            eu.settings,
            now=clock,
            source="test",
            published=JwksProbe(http, f"{cells.home.settings.public_url}/.well-known/jwks.json"),  # type: ignore[union-attr]
        )
        rotated = await store.rotate()
        upcoming = rotated.next_key.kid
        assert upcoming.startswith("eu-west-1.")
        clock.now += store.timings.activate_after + timedelta(seconds=1)
        cells.public.freeze()  # home cannot be asked: the current key keeps signing
        try:
            waiting = await store.maintain()
        finally:
            cells.public.heal()
        assert waiting.unpublished == upcoming and not waiting.changed
        assert (
            await eu.db.fetchval("SELECT kid FROM tool_keys WHERE state = 'current'")
            == kids["eu-west-1"]
        )

        async def activated() -> bool:
            await store.maintain()
            current = await eu.db.fetchval("SELECT kid FROM tool_keys WHERE state = 'current'")
            return bool(current == upcoming)

        await wait_for(activated, what="the published next key current")
        assert upcoming in {k["kid"] for k in (await _public_jwks(cells))["keys"]}
    finally:
        await http.close()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _erase(cell: Region, command: str, platform_id: int, subject: str) -> dict[str, int]:
    """``attune <command> erase`` run with the cell's own settings, as an operator does."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "attune.cli",
        command,
        "erase",
        "--platform-id",
        str(platform_id),
        "--subject",
        subject,
        env={"PATH": os.environ["PATH"], **cell.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    counts: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    return counts


async def test_each_cell_erases_what_it_holds_and_the_loop_erases_everywhere(
    cells: Cells, lms: FakePlatform
) -> None:
    """Data rights per cell: the erase commands act on the cell they run in; running them in
    every cell (deploy/k8s/README.md, *Data rights across cells*) erases a person everywhere."""
    eu, ap = cells.cells["eu-west-1"], cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(cells, lms, client)
    for cell in (eu, ap):
        await wait_for(lambda cell=cell: known(cell, platform_id, client.deployment_id))
    subject = f"travelling-{secrets.token_hex(4)}"
    teacher = await token_of(eu, lms, client, f"erase-teacher-{subject}", teacher=True)
    _, created = await call(eu, teacher, "POST", "/checkins", {"question": "Erase?"})
    student = await token_of(eu, lms, client, subject)
    status, _ = await call(
        eu, student, "PUT", f"/checkins/{created['id']}/response", {"emotion": "calm"}
    )
    assert status == 201
    await token_of(ap, lms, client, subject)  # the same person, in the other region

    launches = "SELECT count(*) FROM launches WHERE platform_id = $1 AND subject = $2"
    assert (await _erase(eu, "launches", platform_id, subject)) == {"launches": 1}
    assert (await _erase(eu, "checkins", platform_id, subject))["identified_answers"] == 1
    assert await eu.db.fetchval(launches, platform_id, subject) == 0
    assert await ap.db.fetchval(launches, platform_id, subject) == 1  # the other cell's own
    for cell in (ap, eu):
        await _erase(cell, "launches", platform_id, subject)
        await _erase(cell, "checkins", platform_id, subject)
    for cell in (eu, ap):
        assert await cell.db.fetchval(launches, platform_id, subject) == 0
    assert not await eu.db.fetchval(
        "SELECT count(*) FROM checkin_responses r JOIN checkins c ON c.id = r.checkin_id "
        "WHERE c.id = $1",
        created["id"],
    )


async def test_home_down_cells_keep_serving_and_nothing_is_lost(
    cells: Cells, lms: FakePlatform
) -> None:
    eu, ap = cells.cells["eu-west-1"], cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(cells, lms, client)
    for cell in (eu, ap):
        await wait_for(lambda cell=cell: known(cell, platform_id, client.deployment_id))
    # A school whose first launch comes while home is down (its deployment not registered).
    newcomer = lms.add_client(launch_urls(cells))
    newcomer_id = await register(cells, lms, newcomer, deployment=f"d-{secrets.token_hex(4)}")
    await wait_for(lambda: known(eu, newcomer_id), what="mirrored")
    teacher = await token_of(eu, lms, client, "outage-teacher", teacher=True)
    _, created = await call(eu, teacher, "POST", "/checkins", {"question": "Outage?"})

    # eu stops hearing from home; then a registration is made there; then home goes down.
    await cells.links["eu-west-1"].to_home.cut()
    late = lms.add_client(launch_urls(cells))
    late_id = await register(cells, lms, late)
    await wait_for(lambda: known(ap, late_id, late.deployment_id), what="the late one in ap")
    await cells.stop_home()
    try:
        for i, cell in enumerate((eu, ap)):
            for n in range(3):
                await token_of(cell, lms, client, f"outage-{cell.name}-{n}")
            student = await token_of(cell, lms, client, f"outage-answer-{i}")
            if cell is eu:
                status, _ = await call(
                    eu, student, "PUT", f"/checkins/{created['id']}/response", {"emotion": "tired"}
                )
                assert status == 201
        await token_of(eu, lms, newcomer, "outage-newcomer")  # a first sighting, kept in eu
        assert await refusal(eu, lms, late) == "platform_unknown"  # eu never heard of it
    finally:
        await cells.start_home()  # its broker comes back empty
        cells.links["eu-west-1"].to_home.heal()

    # Nothing lost: the registration eu missed arrives (home's start republishes every state),
    # the sighting made during the outage reaches home, and every cell's key is still published.
    await wait_for(lambda: launches(eu, lms, late, "after-outage"), what="the late one in eu")

    async def sighted() -> bool:
        _, body = await cells.api("GET", f"/api/admin/platforms/{newcomer_id}")
        return any(d.get("seen_in") == ["eu-west-1"] for d in body["platform"]["deployments"])

    await wait_for(sighted, what="the outage's sighting at home")
    cell_kids = {
        await cell.db.fetchval("SELECT kid FROM tool_keys WHERE state = 'current'")
        for cell in (eu, ap)
    }
    assert cell_kids <= {k["kid"] for k in (await _public_jwks(cells))["keys"]}
    # And changes flow again after the restart.
    assert (await cells.api("DELETE", f"/api/admin/platforms/{late_id}"))[0] == 200
    for cell in (eu, ap):
        await wait_for(lambda cell=cell: _refused_with(cell, lms, late, "platform_unknown"))


async def test_a_cell_down_affects_only_its_own_schools(cells: Cells, lms: FakePlatform) -> None:
    eu, ap = cells.cells["eu-west-1"], cells.cells["ap-southeast-2"]
    client = lms.add_client(launch_urls(cells))
    platform_id = await register(cells, lms, client)
    await wait_for(lambda: known(eu, platform_id, client.deployment_id), what="mirrored")
    await cells.stop_region(ap)
    try:
        await token_of(eu, lms, client, "while-ap-is-down")
        other = lms.add_client(launch_urls(cells))
        other_id = await register(cells, lms, other)  # home keeps taking registrations
        await wait_for(lambda: known(eu, other_id, other.deployment_id), what="eu keeps up")
    finally:
        await cells.start_region(ap)
    await wait_ready(ap, "launch")
    await wait_for(lambda: known(ap, other_id, other.deployment_id), what="ap catches up")
    await token_of(ap, lms, other, "ap-is-back")
