import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.errors import AttuneError, Forbidden
from shared.logs import configure_logging
from shared.settings import Settings, load_settings
from shared.web import ReadinessCheck, add_readiness_check, base_app

ENV = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


@pytest.fixture
def settings() -> Settings:
    return load_settings(ENV, max_request_bytes=2048)


@pytest.fixture
def logbuf() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging(service="websvc", level="INFO", fmt="json", stream=buf)
    yield buf
    configure_logging(service="test", level="WARNING", fmt="json")


def make_app(settings: Settings) -> web.Application:
    app = base_app(settings, service="websvc")

    async def domain_error(request: web.Request) -> web.Response:
        raise AttuneError(
            "The launch <b>expired</b>.",
            code="launch_expired",
            status=401,
            hint="Open the activity again from your course.",
        )

    async def forbidden(request: web.Request) -> web.Response:
        raise Forbidden("Only teachers can do this.", code="role_required")

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("db password is hunter2")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    app.router.add_get("/err/domain", domain_error)
    app.router.add_get("/err/forbidden", forbidden)
    app.router.add_get("/err/crash", crash)
    app.router.add_post("/echo", echo)
    app.router.add_get("/items/{item_id}", echo)
    return app


async def test_domain_error_html_for_browsers(aiohttp_client, settings: Settings) -> None:
    client: TestClient = await aiohttp_client(make_app(settings))
    resp = await client.get("/err/domain", headers={"Accept": "text/html,*/*"})
    assert resp.status == 401
    assert resp.content_type == "text/html"
    body = await resp.text()
    assert "launch_expired" in body
    assert "&lt;b&gt;expired&lt;/b&gt;" in body  # autoescaped
    assert "Open the activity again from your course." in body
    assert resp.headers["X-Request-Id"] in body
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_domain_error_json_when_asked(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.get("/err/forbidden", headers={"Accept": "application/json"})
    assert resp.status == 403
    data = await resp.json()
    assert data["error"]["code"] == "role_required"
    assert data["error"]["message"] == "Only teachers can do this."
    assert data["error"]["request_id"] == resp.headers["X-Request-Id"]


async def test_unexpected_error_is_500_without_internals(
    aiohttp_client, settings: Settings, logbuf: io.StringIO
) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.get("/err/crash", headers={"Accept": "application/json"})
    assert resp.status == 500
    data = await resp.json()
    assert data["error"]["code"] == "internal_error"
    assert "hunter2" not in json.dumps(data)
    records = [json.loads(x) for x in logbuf.getvalue().splitlines()]
    crash = [r for r in records if r["event"] == "unhandled_error"]
    assert len(crash) == 1
    assert crash[0]["request_id"] == data["error"]["request_id"]
    assert "RuntimeError" in crash[0]["exception"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nope", 404, "not_found"), ("DELETE", "/echo", 405, "method_not_allowed")],
)
async def test_framework_errors_get_stable_codes(
    aiohttp_client, settings: Settings, method: str, path: str, status: int, code: str
) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.request(method, path, headers={"Accept": "application/json"})
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code


async def test_oversized_body_is_413(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.post("/echo", data=b"x" * 4096, headers={"Accept": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_too_large"
    ok = await client.post("/echo", data=b"x" * 100)
    assert (await ok.json()) == {"size": 100}


async def test_request_id_propagates_and_is_validated(
    aiohttp_client, settings: Settings, logbuf: io.StringIO
) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.post("/echo", data=b"", headers={"X-Request-Id": "abcdef123456"})
    assert resp.headers["X-Request-Id"] == "abcdef123456"
    bad = await client.post("/echo", data=b"", headers={"X-Request-Id": "<script>"})
    assert bad.headers["X-Request-Id"] != "<script>"
    assert len(bad.headers["X-Request-Id"]) == 32
    records = [json.loads(x) for x in logbuf.getvalue().splitlines()]
    requests = [r for r in records if r["event"] == "request"]
    assert requests[0]["request_id"] == "abcdef123456"
    assert requests[0]["route"] == "/echo"
    assert requests[0]["status"] == 200


async def test_healthz_and_metrics(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(make_app(settings))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    await client.get("/items/1")
    await client.get("/items/2")
    await client.get("/err/forbidden")
    metrics = await (await client.get("/metrics")).text()
    assert (
        'attune_http_requests_total{method="GET",route="/items/{item_id}",service="websvc",'
        'status="200"} 2.0' in metrics
    )
    assert 'attune_http_errors_total{code="role_required",service="websvc"} 1.0' in metrics
    assert "attune_http_request_duration_seconds_bucket" in metrics


async def test_readiness_reflects_required_checks(aiohttp_client, settings: Settings) -> None:
    app = make_app(settings)
    state = {"db": True, "optional": True}

    async def db() -> None:
        if not state["db"]:
            raise ConnectionRefusedError

    async def optional() -> None:
        if not state["optional"]:
            raise OSError

    add_readiness_check(app, ReadinessCheck("db", db))
    add_readiness_check(app, ReadinessCheck("optional", optional, required=False))
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    state["optional"] = False
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"]["optional"] == {
        "ok": False,
        "required": False,
        "error": "OSError",
    }
    state["db"] = False
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["db"]["error"] == "ConnectionRefusedError"


async def test_a_missing_static_file_is_a_stable_404(
    aiohttp_client, settings: Settings, tmp_path: Path
) -> None:
    """Regression (found by the route fuzz): a missing file under a static route answered a
    bare 404 with no code (logged as a 200), and a file name over the file system's limit
    escaped as OSError, a 500. Both are the error edge's ``not_found``; real files are served."""
    (tmp_path / "app.js").write_text("ok()")
    app = make_app(settings)
    app.router.add_static("/static", tmp_path, append_version=False)
    client = await aiohttp_client(app)
    assert await (await client.get("/static/app.js")).text() == "ok()"
    for name in ("missing.js", "%C2%B2", "a" * 300, "..", "%00"):
        resp = await client.get(f"/static/{name}", headers={"Accept": "application/json"})
        assert resp.status == 404, name
        assert (await resp.json())["error"]["code"] == "not_found", name


async def test_a_body_sent_to_the_api_must_be_declared_json(
    aiohttp_client, settings: Settings
) -> None:
    """Regression: an admin API endpoint took a text/plain body as JSON (201). Every request
    with a body to an ``/api/`` route is refused 415 ``json_required`` unless it is declared
    JSON, before the handler runs; elsewhere, and without a body, nothing changes."""
    app = make_app(settings)
    seen: list[bytes] = []

    async def api(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({})

    app.router.add_post("/api/things", api)
    client = await aiohttp_client(app)
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/jsonx",
    ):
        headers = {"Content-Type": content_type} if content_type else {}
        resp = await client.post("/api/things", data=b'{"a": 1}', headers=headers)
        assert resp.status == 415, content_type
        assert (await resp.json())["error"]["code"] == "json_required"
    assert seen == []
    ok = await client.post(
        "/api/things", data=b'{"a": 1}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status == 200
    assert (await client.post("/api/things")).status == 200  # no body
    assert (
        await client.post("/echo", data=b"x", headers={"Content-Type": "text/plain"})
    ).status == 200
    resp = await client.post("/api/nothing", data=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status == 404  # no route: still a 404


async def test_error_pages_name_who_helps_the_reader(aiohttp_client, settings: Settings) -> None:
    """Students and teachers ask their LMS administrator; on an admin-facing service (the
    registration pages) the reader IS that administrator, so the page points at Attune's logs."""
    from shared.web import ERROR_AUDIENCE_KEY

    html = {"Accept": "text/html"}
    users: TestClient = await aiohttp_client(make_app(settings))
    for path in ("/err/domain", "/err/crash"):
        page = await (await users.get(path, headers=html)).text()
        assert "LMS administrator" in page
    admin_app = make_app(settings)
    admin_app[ERROR_AUDIENCE_KEY] = "admin"
    admins: TestClient = await aiohttp_client(admin_app)
    for path in ("/err/domain", "/err/crash"):
        page = await (await admins.get(path, headers=html)).text()
        assert "LMS administrator" not in page
        assert "whoever runs Attune" in page


async def test_an_error_may_bring_its_own_page_for_browsers(
    aiohttp_client, settings: Settings
) -> None:
    app = make_app(settings)

    def page(request: web.Request, exc: AttuneError) -> web.Response:
        return web.Response(text=f"try again ({exc.code})", status=exc.status)

    async def refused(request: web.Request) -> web.Response:
        exc = AttuneError("No.", code="code_used", status=403)
        exc.page = page
        exc.headers = {"Retry-After": "1"}
        raise exc

    app.router.add_get("/err/own-page", refused)
    client: TestClient = await aiohttp_client(app)
    resp = await client.get("/err/own-page", headers={"Accept": "text/html"})
    assert (resp.status, await resp.text()) == (403, "try again (code_used)")
    assert resp.headers["Retry-After"] == "1" and "X-Request-Id" in resp.headers
    resp = await client.get("/err/own-page", headers={"Accept": "application/json"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "code_used"
