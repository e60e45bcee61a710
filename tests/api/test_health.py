"""Liveness, readiness and the API docs."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Pool
from kartka.heartbeat import beat
from kartka.settings import Secret, Settings
from main.web import create_app
from tests.helpers import problem

Client = AsyncTestClient[Litestar]


async def test_health_and_ready(client: Client, pool: Pool) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    await beat(pool, "test-worker")
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "migrations": "current", "worker": "ok"}


async def test_ready_is_503_while_no_worker_is_sending(client: Client, pool: Pool, settings: Settings) -> None:
    # No worker ever reported: codes, card links and pass updates would pile up unsent.
    never = await client.get("/ready")
    assert never.status_code == 503
    assert "No notification worker has ever reported" in problem(never)["detail"]
    # One that went quiet (dead, or stuck) longer than KARTKA_WORKER_STALE_SECONDS ago, on any machine.
    await pool.execute(
        "INSERT INTO worker_heartbeats (name, host, pid, beat_at) VALUES ('w', 'elsewhere', 1, now() - $1::interval)",
        timedelta(seconds=settings.worker_stale_seconds + 5),
    )
    stale = await client.get("/ready")
    assert stale.status_code == 503
    assert "has reported for" in problem(stale)["detail"]
    await beat(pool, "w")
    assert (await client.get("/ready")).status_code == 200
    # Where workers are watched some other way, /ready can leave them out.
    unchecked = msgspec.structs.replace(settings, worker_stale_seconds=0)
    await pool.execute("DELETE FROM worker_heartbeats")
    async with AsyncTestClient(create_app(unchecked)) as other:
        ready = await other.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["worker"] == "not checked"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_ready_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    down = settings.with_database_url(f"postgresql://postgres@127.0.0.1:{_closed_port()}/kartka")
    down = msgspec.structs.replace(down, db_pool_min=0, migrate_on_start=False)
    assert isinstance(down.database_url, Secret)
    async with AsyncTestClient(create_app(down)) as offline:
        assert (await offline.get("/health")).status_code == 200
        response = await offline.get("/ready")
        assert response.status_code == 503
        assert "database" in problem(response)["detail"]
        # Requests that need the database are 503 with Retry-After, not 500.
        busy = await offline.post(
            "/v1/pos/identify", json={"code": "+375291234567"}, headers={"Authorization": "Bearer kk_pos_x_y"}
        )
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "5"
        assert problem(busy)["code"] == "database-unavailable"


async def test_openapi_documents_every_operation(client: Client) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values() if isinstance(op, dict)}
    assert {
        "posRegisterCustomer",
        "posIssueAnonymousCard",
        "posAttachCard",
        "posIdentify",
        "integrationRegisterCustomer",
        "integrationImportCustomers",
        "health",
        "ready",
    } <= operations
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    ui = await client.get("/schema")
    assert ui.status_code == 200
    assert "text/html" in ui.headers["content-type"]


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger", "/schema/redoc"])
async def test_api_docs_work_offline_from_our_own_assets(client: Client, page: str) -> None:
    """Swagger UI and ReDoc load every script, style and icon from us: no CDN, no web fonts."""
    html = (await client.get(page)).text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls
    assert not [url for url in urls if "//" in url], "the docs page points outside the service"
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
        kind = asset.headers["content-type"].split(";")[0]
        assert kind in {"text/javascript", "application/javascript", "text/css", "image/png"}, url


async def test_the_docs_assets_revalidate_with_a_304(client: Client) -> None:
    first = await client.get("/schema/assets/swagger-ui.css")
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"')
    assert "max-age=86400" in first.headers["cache-control"]
    for value in (tag, f"W/{tag}", "*", f'"x", {tag}'):
        again = await client.get("/schema/assets/swagger-ui.css", headers={"If-None-Match": value})
        assert again.status_code == 304, value
        assert again.content == b""
        assert again.headers["etag"] == tag
    assert (await client.get("/schema/assets/swagger-ui.css", headers={"If-None-Match": '"x"'})).status_code == 200
    assert (await client.get("/schema/assets/LICENSE.redoc")).status_code == 404
    assert (await client.get("/schema/assets/..%2Fapidocs.py")).status_code == 404
